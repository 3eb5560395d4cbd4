"""Fixtures of the heartbeat tests: the store on fakeredis and on a real redis-server
(the Lua runs on both: cjson and TIME are Redis's own there), with a clock the test
moves (it stands for Redis's)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.stack import binaries, render
from relay.stack.processes import Process, wait_until

NAMES = Names("pdt")
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, at: float = START) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def period_check(name: str = "backup", period_s: float = 60, grace_s: float = 30,
                 **fields: object) -> Check:
    return Check(name=name, grace_s=grace_s, period_s=period_s, keys=("ops",),
                 **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    where: Path = tmp_path_factory.mktemp("redis")
    sock = where / "redis.sock"
    argv = render.redis_argv(binaries.redis_server(), 0, where, unixsocket=sock)
    server = Process("redis", argv, dict(os.environ), where)
    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    try:
        wait_until(client.ping, 10, "Redis on its socket")
        yield client
    finally:
        client.close()
        server.kill()


@pytest.fixture(params=["fakeredis", "redis-server"])
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        fake = fakeredis.FakeRedis(decode_responses=True)
        yield fake
        fake.flushall()
        return
    real: redis.Redis = request.getfixturevalue("real_redis")
    real.flushall()
    yield real


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(redis_client: redis.Redis, clock: Clock) -> Heartbeats:
    return Heartbeats(redis_client, NAMES, clock=clock)
