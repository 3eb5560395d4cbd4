"""Review of issue 26, the ingest side, end to end on a real redis-server (fakeredis knows
no maxmemory): what version 3 added must run when Redis is full."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis

from relay import formats
from relay.errors import StoreFormatError
from relay.housekeeping import retention
from relay.indexing import PER_SLICE
from relay.names import Names
from relay.settings import Settings


def fill(client: redis.Redis) -> None:
    """Redis at its maxmemory: a write that may grow memory is refused (OOM)."""
    for n in range(100):  # small writes: no large query buffer to free afterwards
        client.set(f"review:padding:{n}", "x" * 20_000)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 200_000)
    assert full(client)


def full(client: redis.Redis) -> bool:
    try:
        client.set("review:probe", "x")
    except redis.exceptions.OutOfMemoryError:
        return True
    return False


def test_the_operators_commands_run_when_redis_is_full(make_stack) -> None:
    # every command's start checks the stored formats; since version 3 the check also
    # recounts the queues' total, whose first write (SET) a full Redis refused: the
    # commands that free room (dead-letters purge, queue, forget-key) answered "cannot
    # reach Redis" and exit 1 (failed before)
    stack = make_stack(keys=1)
    client = redis.Redis.from_url(stack.redis.url)
    names = Names()
    client.hset(names.known_keys, "k1", "1")
    client.hset(names.stats("k1"), "bytes", 10)  # a total to set right: 0 -> 10
    client.set(names.format, 3)
    fill(client)
    listed = stack.cli("dead-letters", "list")
    assert full(client)  # (still)
    assert listed.returncode == 0, listed.stderr
    assert "OOM" not in listed.stderr


def _stack_of_one_key(make_stack: Any, monkeypatch: Any) -> tuple[Settings, Any, Names]:
    """A stack of one key, its settings in this process's environment, a client of its
    Redis, and a key "k1" the relay served."""
    stack = make_stack(keys=1)
    for name, value in stack.env.items():
        if name.startswith("RELAY_"):
            monkeypatch.setenv(name, value)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    client.hset(Names().known_keys, "k1", "1")
    return Settings.from_env(), client, Names()


def test_the_retention_sweep_runs_when_redis_is_full(make_stack, monkeypatch) -> None:
    # the sweep frees room (idle incidents, old story steps); since version 3 it recounts
    # the queues' total first, whose SET a full Redis refused: the sweep stopped there,
    # before the history's trim (failed before)
    settings, client, names = _stack_of_one_key(make_stack, monkeypatch)
    client.hset(names.stats("k1"), "bytes", 10)  # drift to set right: 0 -> 10
    client.xadd(names.history, {"s": "accepted", "v": "old"}, id="1-0")  # 1970: past days
    fill(client)
    found = retention.sweep(client, names, settings, int(time.time() * 1000))
    assert found["story_steps"] == 1
    assert client.get(names.queued_bytes) == "10"
    assert full(client)  # (still)


def test_an_upgrade_that_cannot_finish_refuses_to_start(make_stack, monkeypatch) -> None:
    # promise 9 and relay/formats.py: "none goes on before the index is whole". A slice
    # of the build after the first writes the index first (HSET), which a full Redis
    # refuses; the ingress's and worker's start took that for "Redis does not answer",
    # logged a warning and ran on a version 2 store with half an index and no total
    # (failed before: at_start returned None, the version still 2)
    settings, client, names = _stack_of_one_key(make_stack, monkeypatch)
    client.set(names.format, 2)
    client.zadd(names.incidents("k1"), {f"incident-{n}": n for n in range(2 * PER_SLICE)})
    fill(client)
    with pytest.raises(StoreFormatError, match="Redis is full"):
        formats.at_start(settings, True, logging.WARNING)
    assert client.get(names.format) == "2"
    client.config_set("maxmemory", 0)  # room again: the next start goes on with it
    found = formats.at_start(settings, True, logging.WARNING)
    assert found is not None and client.get(names.format) == "3"
    assert client.hlen(names.where) == 2 * PER_SLICE
