"""The export's lag (relay.history.pg.lag): the age of the oldest entry no exporter has
committed, on fakeredis and a real redis-server."""

from __future__ import annotations

import redis

from relay.history.pg.lag import lag_ms
from relay.names import Names
from tests.heartbeat_fixtures import real_redis, redis_client

__all__ = ["real_redis", "redis_client"]  # fixtures
NAMES = Names("pdt")


def add(client: redis.Redis, ms: int) -> str:
    return str(client.xadd(NAMES.history, {"s": "x"}, id=f"{ms}-0"))


def test_no_group_no_lag(redis_client: redis.Redis) -> None:
    assert lag_ms(redis_client, NAMES, 5_000) is None
    add(redis_client, 1_000)
    assert lag_ms(redis_client, NAMES, 5_000) is None


def test_the_oldest_entry_not_committed(redis_client: redis.Redis) -> None:
    for ms in (1_000, 2_000, 3_000):
        add(redis_client, ms)
    redis_client.xgroup_create(NAMES.history, NAMES.history_group, id="0")
    assert lag_ms(redis_client, NAMES, 10_000) == 9_000  # nothing read yet
    read = redis_client.xreadgroup(NAMES.history_group, "a", {NAMES.history: ">"}, count=2)
    assert lag_ms(redis_client, NAMES, 10_000) == 9_000  # read, not acknowledged
    ids = [entry_id for entry_id, _ in read[0][1]]
    redis_client.xack(NAMES.history, NAMES.history_group, ids[0])
    assert lag_ms(redis_client, NAMES, 10_000) == 8_000
    redis_client.xack(NAMES.history, NAMES.history_group, ids[1])
    assert lag_ms(redis_client, NAMES, 10_000) == 7_000  # the next, never read
    redis_client.xreadgroup(NAMES.history_group, "a", {NAMES.history: ">"}, count=5)
    redis_client.xack(NAMES.history, NAMES.history_group, "3000-0")
    assert lag_ms(redis_client, NAMES, 10_000) == 0
