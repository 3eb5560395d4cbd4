"""Entries lost from the record (relay.history.loss): what the stream's caps trim before
the export group was delivered it is counted into Names.history_export ``lost``, exactly
and once, by every trim: the count cap, the byte cap, the age trim, shedding and ENQUEUE;
on a real redis-server (the scripts' XINFO, XTRIM MINID ... LIMIT)."""

from __future__ import annotations

from dataclasses import replace

import redis

from relay.app import create_app
from relay.history import History
from relay.names import Names
from relay.settings import Settings
from relay.shed import Shed
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pdr")


def fresh(real_redis: redis.Redis) -> redis.Redis:
    real_redis.flushall()
    return real_redis


def history(client: redis.Redis, settings: Settings, entries: int = 1_000,
            mb: float = 24.0) -> History:
    return History(client, NAMES, replace(settings, history_max_entries=entries,
                                          history_max_mb=mb))


def note(hist: History, n: int, size: int = 10) -> None:
    for i in range(n):
        hist.note("attempt", 0, i=f"e{i}", d="k", o="x" * size)


def lost(client: redis.Redis) -> int:
    return int(client.hget(NAMES.history_export, "lost") or 0)


def group(client: redis.Redis) -> None:
    client.xgroup_create(NAMES.history, NAMES.history_group, id="0", mkstream=True)


def read(client: redis.Redis, count: int) -> list[str]:
    found = client.xreadgroup(NAMES.history_group, "a", {NAMES.history: ">"}, count=count)
    return [entry_id for entry_id, _ in found[0][1]] if found else []


def test_without_the_group_nothing_is_counted(real_redis, settings) -> None:
    client = fresh(real_redis)
    hist = history(client, settings, entries=100)
    note(hist, 400)
    assert client.xlen(NAMES.history) < 400 and lost(client) == 0
    assert not client.exists(NAMES.history_export)


def test_the_count_cap_counts_what_no_exporter_was_delivered(real_redis, settings) -> None:
    client = fresh(real_redis)
    group(client)
    hist = history(client, settings, entries=100)
    note(hist, 150)
    assert read(client, 120)  # delivered: 120 of the first
    note(hist, 250)
    length = client.xlen(NAMES.history)
    assert 100 <= length < 200
    # 400 added, `length` kept; 120 were delivered (held or exported): the rest lost
    assert lost(client) == 400 - length - 120
    before = lost(client)
    assert read(client, 1_000)  # the exporter catches up: nothing more is lost
    note(hist, 150)
    assert lost(client) == before


def test_the_byte_cap_counts_too(real_redis, settings) -> None:
    client = fresh(real_redis)
    group(client)
    hist = history(client, settings, entries=1_000_000, mb=0.01)  # about 10 kB
    note(hist, 30, size=100)
    delivered = len(read(client, 10))
    note(hist, 200, size=100)
    length = client.xlen(NAMES.history)
    assert length < 230 and lost(client) == 230 - length - delivered


def test_the_age_trim_counts_the_undelivered_it_forgets(real_redis, settings) -> None:
    client = fresh(real_redis)
    group(client)
    for ms in range(1, 11):
        client.xadd(NAMES.history, {"s": "x"}, id=f"{ms}-0")
    read(client, 4)  # 1..4 delivered
    hist = history(client, settings)
    assert hist.trim(8) == 7  # 1..7 go: 5, 6, 7 never delivered
    assert lost(client) == 3
    assert hist.trim(8) == 0 and lost(client) == 3  # once
    assert hist.trim(11) == 3 and lost(client) == 6
    assert history(client, settings).trim(5) == 0  # an empty stream


def test_shedding_drops_the_delivered_first_and_counts_the_rest(real_redis, settings) -> None:
    client = fresh(real_redis)
    group(client)
    for ms in range(1, 1001):
        client.xadd(NAMES.history, {"s": "x"}, id=f"{ms}-0")
    read(client, 300)
    shed = Shed(client, NAMES)
    assert shed.make_room()
    assert lost(client) == 0  # only delivered entries went
    first = int(client.xrange(NAMES.history, count=1)[0][0].split("-")[0])
    assert first <= 301
    while client.xlen(NAMES.history) > 100 and shed.make_room():
        pass
    length = client.xlen(NAMES.history)
    assert lost(client) == 1000 - 300 - length


def test_enqueue_counts_what_its_count_cap_trims(real_redis, settings) -> None:
    client = fresh(real_redis)
    group(client)
    app = create_app(replace(settings, history_max_entries=120), client=client).test_client()
    event = {"event_action": "trigger", "payload": {"summary": "s", "source": "h",
                                                    "severity": "info"}}
    for _ in range(300):
        assert app.post("/v2/enqueue", json=event).status_code == 202
    length = client.xlen(NAMES.history)
    assert length < 300 and lost(client) == 300 - length
