"""The exporter (relay.history.pg.exporter) in this process, on a real redis-server and a
real PostgreSQL: every entry's steps written and acknowledged once committed, the
figures, PostgreSQL down (waits, says so once, loses nothing), a dead exporter's entries
claimed, entries trimmed while held counted lost, two exporters, retention."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
import redis

from relay.app import create_app
from relay.errors import RecordDown
from relay.history import History
from relay.history.pg.connect import connect
from relay.history.pg.exporter import Exporter, Tuning
from relay.history.pg.migrate import migrate
from relay.history.pg.partitions import DAY_MS
from relay.history.search import Query, search
from relay.names import Names
from relay.settings import Settings
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pdr")
FAST = Tuning(batch=7, block_ms=10, claim_idle_ms=0, claim_every_s=0.0)


@pytest.fixture
def client(real_redis: redis.Redis) -> redis.Redis:
    real_redis.flushall()
    return real_redis


@pytest.fixture
def recorded(settings: Settings, pg_dsn: str, monkeypatch) -> Iterator[Settings]:
    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
    made: list[Exporter] = []
    start = Exporter.__init__

    def kept(self: Exporter, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Exporter, "__init__", kept)
    yield replace(settings, history_dsn=pg_dsn)
    for exporter in made:  # their connections, before the database is dropped
        exporter.close()


def accept(client: redis.Redis, settings: Settings, count: int, prefix: str = "d") -> None:
    app = create_app(settings, client=client).test_client()
    for n in range(count):
        assert app.post("/v2/enqueue", json={
            "event_action": "trigger", "dedup_key": f"{prefix}{n}", "payload": {
                "summary": f"disk {n} full", "source": "db1", "severity": "critical"}}
        ).status_code == 202


def drain(exporter: Exporter, most: int = 100) -> int:
    total = 0
    for _ in range(most):
        done = exporter.turn()
        if not done:
            return total
        total += done
    raise AssertionError("the exporter never caught up")


def rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def figures(client: redis.Redis) -> dict[str, str]:
    return client.hgetall(NAMES.history_export)


def test_every_entry_written_then_acknowledged_with_the_figures(client, recorded) -> None:
    accept(client, recorded, 20)
    history = History(client, NAMES, recorded)
    for story in search(client, NAMES, Query(limit=100)):
        history.note("attempt", 0, i=story.id, d=story.dedup_key, o="retry", st=502)
        history.note("delivered", 0, i=story.id, d=story.dedup_key, r="ok")
    entries = client.xlen(NAMES.history)
    exporter = Exporter(client, recorded, "a", FAST, clock=lambda: 1_700_000_000.0)
    assert drain(exporter) == entries
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.steps") == [(60,)]
    assert rows(recorded.history_dsn, "SELECT state, count(*) FROM pd_relay.events "
                "GROUP BY state") == [("delivered", 20)]
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0
    found = figures(client)
    assert int(found["exported"]) == entries and found.get("lost") is None
    assert found["last"] == client.xrevrange(NAMES.history, count=1)[0][0]
    assert found["at_ms"] == "1700000000000"


def test_the_record_and_the_streams_search_tell_the_same_stories(client, recorded) -> None:
    accept(client, recorded, 12)
    history = History(client, NAMES, recorded)
    stories = search(client, NAMES, Query(limit=100))
    for n, story in enumerate(stories):
        if n % 3 == 0:
            history.note("attempt", 0, i=story.id, d=story.dedup_key, o="retry")
        if n % 3 == 1:
            history.note("dead", 0, i=story.id, d=story.dedup_key, e="invalid", st=400)
    drain(Exporter(client, recorded, "a", FAST))
    stories = search(client, NAMES, Query(limit=100))
    record = dict(rows(recorded.history_dsn, "SELECT id, state FROM pd_relay.events"))
    assert record == {story.id: story.state for story in stories}
    steps = rows(recorded.history_dsn, "SELECT event_id, step FROM pd_relay.steps "
                 "ORDER BY at, entry, n")
    for story in stories:
        assert [s for i, s in steps if i == story.id] == [s["step"] for s in story.steps]


def test_postgresql_down_waits_says_so_once_and_loses_nothing(client, recorded,
                                                               caplog) -> None:
    accept(client, recorded, 10)
    up = [False]
    waits: list[float] = []

    def connector() -> psycopg.Connection:
        if not up[0]:
            raise RecordDown(["PostgreSQL at postgresql://u:***@127.0.0.1/x: refused"])
        return connect(recorded.history_dsn, autocommit=True)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        up[0] = len(waits) >= 5  # back after five waits

    exporter = Exporter(client, recorded, "a", replace(FAST, batch=100), sleep=sleep,
                        connector=connector)
    with caplog.at_level(logging.INFO, logger="relay.history.pg.exporter"):
        exporter.run(turns=1)
    assert len(waits) == 5 and all(0 <= w <= 30 for w in waits)
    said = [r.getMessage() for r in caplog.records]
    assert sum("cannot write" in line for line in said) == 1
    assert sum("writing again" in line for line in said) == 1
    assert not any(recorded.history_dsn in line for line in said)
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(10,)]
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0


def test_a_dead_exporters_entries_are_claimed_and_written_once(client, recorded) -> None:
    accept(client, recorded, 30)
    dead = Exporter(client, recorded, "dead", FAST)
    dead.ensure_group()
    held = dead._next(0.0)  # read, then it died before writing: they stay held
    assert held and client.xpending(NAMES.history, NAMES.history_group)["pending"] == 7
    half = Exporter(client, recorded, "half", FAST)  # wrote, died before acknowledging
    half.held = half._next(10.0)
    half._write(half.held)
    other = Exporter(client, recorded, "other", FAST)
    drain(other)
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(30,)]
    assert int(figures(client)["exported"]) == 30


def test_entries_trimmed_while_held_are_counted_lost_once(client, recorded) -> None:
    accept(client, recorded, 10)
    dead = Exporter(client, recorded, "dead", FAST)
    dead.ensure_group()
    held = dead._next(0.0)
    History(client, NAMES, recorded).trim_age(keys=[NAMES.history], args=[held[3][0]])
    other = Exporter(client, recorded, "other", FAST)
    drain(other)
    found = figures(client)
    assert int(found["lost"]) == 3 and int(found["exported"]) == 7
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(7,)]
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0


def test_entries_committed_then_trimmed_before_their_ack_are_not_lost(client,
                                                                      recorded) -> None:
    accept(client, recorded, 10)
    half = Exporter(client, recorded, "half", FAST)
    half.ensure_group()
    half.held = half._next(0.0)
    half._write(half.held)  # committed; died before acknowledging
    History(client, NAMES, recorded).trim_age(keys=[NAMES.history], args=[half.held[3][0]])
    drain(Exporter(client, recorded, "other", FAST))
    found = figures(client)
    assert found.get("lost") is None and int(found["exported"]) == 10
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(10,)]


def test_entries_claimed_from_a_waiting_exporter_are_no_longer_its_to_write(
        client, recorded) -> None:
    accept(client, recorded, 10)
    up = [False]

    def connector() -> psycopg.Connection:
        if not up[0]:
            raise RecordDown(["down"])
        return connect(recorded.history_dsn, autocommit=True)

    waiting = Exporter(client, recorded, "waiting", FAST, connector=connector)
    waiting.retained_at = float("inf")  # no retention run first
    with pytest.raises(RecordDown):
        waiting.turn()  # holds 7 entries, PostgreSQL down
    assert len(waiting.held) == 7
    History(client, NAMES, recorded).trim_age(keys=[NAMES.history],
                                              args=[waiting.held[3][0]])
    up[0] = True
    drain(Exporter(client, recorded, "other", FAST))  # claims them: 3 read back empty
    assert int(figures(client)["lost"]) == 3
    waiting.turn()  # they are the other's now: not written from its memory
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(7,)]
    assert int(figures(client)["exported"]) == 7


def test_two_exporters_taking_turns_write_each_entry_once(client, recorded) -> None:
    accept(client, recorded, 40)
    a = Exporter(client, recorded, "a", replace(FAST, claim_idle_ms=60_000))
    b = Exporter(client, recorded, "b", replace(FAST, claim_idle_ms=60_000))
    for _ in range(20):
        a.turn()
        b.turn()
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(40,)]
    assert int(figures(client)["exported"]) == 40
    readers = {c["name"]: c["pending"] for c in
               client.xinfo_consumers(NAMES.history, NAMES.history_group)}
    assert set(readers) == {"a", "b"}


def test_retention_drops_the_days_past_it(client, recorded) -> None:
    settings = replace(recorded, history_days=2)
    exporter = Exporter(client, settings, "a", FAST)
    with connect(recorded.history_dsn, autocommit=True) as conn:
        exporter.partitions.ensure(conn, [])
    now = 20_010 * DAY_MS + 3_600_000
    old = [f"{(20_010 - n) * DAY_MS + 60_000}-0" for n in range(5)]
    for entry_id in reversed(old):
        client.xadd(NAMES.history, {"s": "attempt", "k": "0", "x": '{"i":"e","d":"k"}'},
                    id=entry_id)
    exporter.retained_at = now / 1000  # not yet
    drain(exporter)
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.steps") == [(5,)]
    dropped = exporter.retention(now)
    assert sorted(dropped) == ["events_20241010", "events_20241011", "steps_20241010",
                               "steps_20241011"]
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.steps") == [(3,)]


def test_entries_of_many_steps_are_read_and_written_a_bounded_number_at_once(
        client, recorded, monkeypatch) -> None:
    from relay.history import RS, US, accepted
    from relay.history.pg import exporter as module

    for call in range(12):
        client.xadd(NAMES.history, {"s": "accepted", "v": RS.join(
            f"1{US}" + accepted(i=f"{call:04x}{n:012x}", d=f"k{call}-{n}", a="trigger").decode()
            for n in range(100))})
    monkeypatch.setattr(module, "STEPS_AT_ONCE", 250)
    sizes: list[int] = []
    real = module.write

    def counted(conn, steps, *args):  # type: ignore[no-untyped-def]
        sizes.append(len(steps))
        return real(conn, steps, *args)

    monkeypatch.setattr(module, "write", counted)
    exporter = Exporter(client, recorded, "a", FAST)
    assert exporter.turn() == 7  # the first read knows no better than --batch
    assert exporter.count() == 2  # 100 steps an entry: 2 entries, 200 steps
    drain(exporter)
    assert max(sizes) <= 250 and sum(sizes) == 1_200
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(1_200,)]


def test_exporters_gone_holding_nothing_are_forgotten(client, recorded) -> None:
    accept(client, recorded, 10)
    gone = Exporter(client, recorded, "gone", FAST)
    gone.turn()  # read and acknowledged: holds nothing
    holding = Exporter(client, recorded, "holding", FAST)
    holding.ensure_group()
    assert holding._next(0.0)  # holds 3
    me = Exporter(client, recorded, "me", replace(FAST, claim_idle_ms=60_000))
    me.turn()
    assert me.forget_consumers(0) == ["gone"]
    names = {c["name"] for c in client.xinfo_consumers(NAMES.history, NAMES.history_group)}
    assert names == {"holding", "me"}
    assert me.forget_consumers(86_400_000) == []


def test_postgresql_too_slow_is_waited_out_like_down(client, recorded, caplog) -> None:
    accept(client, recorded, 5)
    with psycopg.connect(recorded.history_dsn) as blocker:
        blocker.execute("LOCK TABLE pd_relay.steps IN SHARE MODE")  # every insert waits
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 2:
                blocker.rollback()  # PostgreSQL fast again

        exporter = Exporter(client, recorded, "a", replace(FAST, batch=100), sleep=sleep,
                            connector=lambda: connect(recorded.history_dsn, autocommit=True,
                                                      statement_timeout_ms=200))
        exporter.retained_at = float("inf")
        with caplog.at_level(logging.WARNING, logger="relay.history.pg.exporter"):
            exporter.run(turns=1)
    assert len(waits) == 2 and "statement timeout" in caplog.text
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(5,)]
