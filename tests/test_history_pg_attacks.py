"""The record's writing side attacked (review of issue 29), on a real redis-server and a
real PostgreSQL: entries claimed after being trimmed while held (Redis 7's XAUTOCLAIM
drops them from the group), an entry PostgreSQL cannot index, a partition dropped by
another exporter's retention, the count cap's work per script call, the DSN's password
in what is said."""

from __future__ import annotations

import random
import string
import threading
from collections.abc import Iterator
from dataclasses import replace

import fakeredis
import psycopg
import pytest
import redis

from relay.app import create_app
from relay.errors import RecordDown
from relay.history import History
from relay.history.loss import SLACK, TRIM_MOST
from relay.history.pg import SCHEMA_VERSION, writer
from relay.history.pg.connect import connect
from relay.history.pg.exporter import Exporter
from relay.history.pg.migrate import migrate
from relay.history.pg.partitions import DAY_MS, Partitions, day_of, name
from relay.settings import Settings
from tests.test_history_pg_exporter import (
    FAST,
    NAMES,
    client,
    drain,
    figures,
    real_redis,
    recorded,
    rows,
)

__all__ = ["client", "real_redis", "recorded"]  # fixtures, shared with the exporter's tests


def accept(client: redis.Redis, settings: Settings, count: int, source: str = "db1",
           prefix: str = "d") -> None:
    app = create_app(settings, client=client).test_client()
    for n in range(count):
        assert app.post("/v2/enqueue", json={
            "event_action": "trigger", "dedup_key": f"{prefix}{n}", "payload": {
                "summary": f"disk {n} full", "source": source, "severity": "critical"}}
        ).status_code == 202


def test_a_source_too_long_for_an_index_loses_that_entry_only(client, recorded) -> None:
    """payload.source has no length limit; PostgreSQL's btree refuses an index row over
    2704 bytes (ProgramLimitExceeded, not a DataError): the export must not stop there."""
    accept(client, recorded, 3)
    noise = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=9000))
    accept(client, recorded, 1, source=noise, prefix="big")
    accept(client, recorded, 3, prefix="after")
    exporter = Exporter(client, recorded, "a", FAST)
    drain(exporter, most=5)
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0
    assert int(figures(client)["exported"]) == 7
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events "
                "WHERE dedup_key LIKE 'after%'") == [(3,)]
    (source, whole), = rows(recorded.history_dsn, "SELECT source, payload->'e'->'payload'"
                            "->>'source' FROM pd_relay.events WHERE dedup_key = 'big0'")
    assert noise.startswith(source) and len(source) < len(noise) and whole == noise


def test_an_entry_postgresql_cannot_index_is_lost_alone_and_counted(client, recorded,
                                                                     monkeypatch) -> None:
    """Whatever else PostgreSQL cannot index (here: the bound lifted) stops no export."""
    monkeypatch.setattr(writer, "INDEXED_CHARS", 100_000)
    accept(client, recorded, 3)
    noise = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=9000))
    accept(client, recorded, 1, source=noise, prefix="big")
    accept(client, recorded, 3, prefix="after")
    drain(Exporter(client, recorded, "a", FAST), most=5)
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0
    found = figures(client)
    assert (int(found["exported"]), int(found["lost"])) == (6, 1)
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(6,)]


@pytest.fixture(params=["redis-7-fake", "redis-server"])
def any_redis(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """Redis 7's XAUTOCLAIM drops from the group the entries it finds deleted (6.2 claims
    them): fakeredis as Redis 7, and the redis-server on this machine (either)."""
    if request.param == "redis-7-fake":
        fake = fakeredis.FakeRedis(version=(7, 0), decode_responses=True)
        yield fake
        fake.flushall()
        return
    real: redis.Redis = request.getfixturevalue("real_redis")
    real.flushall()
    yield real


def steps(client: redis.Redis, count: int) -> list[str]:
    return [client.xadd(NAMES.history, {"s": "attempt", "k": "0",
                                        "x": f'{{"i":"e{n}","d":"k{n}","o":"retry"}}'})
            for n in range(count)]


@pytest.mark.parametrize("committed", [False, True])
def test_entries_trimmed_while_a_dead_exporter_held_them_are_counted_once(
        any_redis, recorded, committed) -> None:
    client = any_redis
    ids = steps(client, 5)
    dead = Exporter(client, recorded, "dead", FAST)
    dead.ensure_group()
    dead.held = dead._next(0.0)
    assert len(dead.held) == 5
    if committed:
        dead._write(dead.held)  # committed, then died before acknowledging
    client.xtrim(NAMES.history, minid=ids[3], approximate=False)  # 3 go while held
    other = Exporter(client, recorded, "other", FAST)
    drain(other)
    drain(Exporter(client, recorded, "third", FAST))  # nothing counted twice
    found = figures(client)
    if committed:
        assert int(found["exported"]) == 5 and found.get("lost") is None
    else:
        assert int(found["exported"]) == 2 and int(found["lost"]) == 3
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0
    assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.steps") == [
        (5 if committed else 2,)]


@pytest.mark.parametrize("dsn", [
    "postgresql://relay:s3cr%zzet@127.0.0.1:1/db",  # libpq quotes the bad token
    "postgresql://relay:s3cr%25et%zz@127.0.0.1:1/db",
])
def test_a_dsn_libpq_cannot_parse_never_says_its_password(dsn: str) -> None:
    with pytest.raises(RecordDown) as caught:
        connect(dsn, timeout_s=1)
    said = str(caught.value)
    assert "s3cr" not in said and "PostgreSQL at postgresql://relay:***@" in said


def test_the_count_cap_trims_a_bounded_number_of_entries_per_call(real_redis,
                                                                   settings) -> None:
    """RELAY_HISTORY_MAX_ENTRIES lowered (or one process configured lower than the others)
    with the export group: one script call must not read the whole stream (XRANGE of
    200,000 entries took 1.25 s inside one NOTE, Redis blocked); it trims at most
    TRIM_MOST entries per call, as MAXLEN ~'s LIMIT did, counting each lost once."""
    client = real_redis
    client.flushall()
    total = 3 * TRIM_MOST + 500
    with client.pipeline(transaction=False) as pipe:
        for n in range(total):
            pipe.xadd(NAMES.history, {"s": "attempt", "k": "0", "x": f'{{"i":"e{n}","d":"k"}}'})
        pipe.execute()
    client.xgroup_create(NAMES.history, NAMES.history_group, id="0")
    history = History(client, NAMES, replace(settings, history_max_entries=100))
    history.note("attempt", 0, i="x", d="k")
    assert client.xlen(NAMES.history) >= total + 1 - TRIM_MOST
    for _ in range(10):
        history.note("attempt", 0, i="x", d="k")
    assert client.xlen(NAMES.history) <= 100 + SLACK
    assert int(figures(client)["lost"]) == total + 11 - client.xlen(NAMES.history)


def test_a_partition_another_exporter_dropped_is_made_again(client, recorded) -> None:
    """Exporter a knows day D's partition (it wrote there); b's retention drops it; a's
    next entry of day D must not fail for ever (no partition of relation for the row)."""
    settings = replace(recorded, history_days=2)
    day = 20_010 * DAY_MS
    for n in (1, 2):
        client.xadd(NAMES.history, {"s": "attempt", "k": "0", "x": f'{{"i":"e{n}","d":"k"}}'},
                    id=f"{day + n * 60_000}-0")
    waits: list[float] = []
    a = Exporter(client, settings, "a", replace(FAST, batch=1), clock=lambda: day / 1000,
                 sleep=waits.append)
    a.run(turns=1)  # its retention at day D's time keeps D; the first entry written
    b = Exporter(client, settings, "b", FAST)
    assert "steps_20241014" in b.retention(day + 5 * DAY_MS)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 3:
            a.stopping.set()

    a.sleep = sleep
    a.run(turns=1)
    assert client.xpending(NAMES.history, NAMES.history_group)["pending"] == 0
    assert int(figures(client)["exported"]) == 2


def test_retention_waits_for_no_long_reader_and_holds_up_no_batch(client, recorded) -> None:
    """An auditor's `pd-relay history export` holds its transaction (a server-side
    cursor) for as long as it streams; retention's DROP of an old partition waits for it
    and, waiting, queues every write (and read) of the parent behind it: the export must
    not stall for as long as the auditor reads, nor its turn fail on it."""
    settings = replace(recorded, history_days=2)
    now_ms = client.time()[0] * 1000
    with connect(recorded.history_dsn, autocommit=True) as conn:
        Partitions().ensure(conn, [day_of(now_ms - 10 * DAY_MS), day_of(now_ms)])
    accept(client, settings, 3)
    exporter = Exporter(client, settings, "a", FAST, connector=lambda: connect(
        recorded.history_dsn, autocommit=True, statement_timeout_ms=3_000))
    with psycopg.connect(recorded.history_dsn) as reader:  # a transaction, open
        reader.execute("SELECT count(*) FROM pd_relay.events").fetchall()
        assert exporter.turn() == 3
        assert rows(recorded.history_dsn, "SELECT count(*) FROM pd_relay.events") == [(3,)]
    assert exporter.retained_at < now_ms / 1000  # it tries again soon
    old = name("events", day_of(now_ms - 10 * DAY_MS))
    assert old in exporter.retention(now_ms)  # the reader gone: dropped


def test_nul_characters_anywhere_in_an_event_are_recorded(client, recorded) -> None:
    """jsonb and text refuse U+0000: an event holding it (202 at the ingress) is in the
    record, its NULs left out, not lost."""
    app = create_app(recorded, client=client).test_client()
    assert app.post("/v2/enqueue", json={
        "event_action": "trigger", "dedup_key": "nul\u0000key", "payload": {
            "summary": "disk\u0000full", "source": "db\u00001", "severity": "critical",
            "custom_details": {"k\u0000": ["v\u0000", {"\u0000": "\u0000"}]}},
        "links": [{"href": "https://x.example/\u0000", "text": "\u0000"}]}).status_code == 202
    drain(Exporter(client, recorded, "a", FAST))
    assert figures(client).get("lost") is None
    assert rows(recorded.history_dsn, "SELECT dedup_key, summary, source, "
                "payload->'e'->'payload'->'custom_details' FROM pd_relay.events") == [
        ("nulkey", "diskfull", "db1", {"k": ["v", {"": ""}]})]


def test_a_server_gone_without_a_word_is_found_dead_soon(pg_dsn: str) -> None:
    """A statement waiting on a server whose host died (packets dropped: measured with
    iptables on loopback, a `SELECT pg_sleep(3)` cut after 1 s) waited past 97 s (the
    system's keepalive: 2 hours) and with these settings failed after 15 s, so the
    exporter backs off and connects again. A DSN's own keepalive settings win."""
    with connect(pg_dsn) as conn:
        found = conn.info.get_parameters()
    assert found["keepalives_idle"] == "10" and found["tcp_user_timeout"] == "30000"
    with connect(pg_dsn + "?keepalives_idle=60") as conn:
        assert conn.info.get_parameters()["keepalives_idle"] == "60"


def test_four_migrations_at_once_apply_each_file_once(pg_dsn: str) -> None:
    """Two stacks (or an init container and an operator) migrating together (held, not a
    defect: passed before)."""
    applied: list[list[int]] = []
    failed: list[str] = []

    def run() -> None:
        try:
            with connect(pg_dsn, autocommit=True) as conn:
                applied.append([m.version for m in migrate(conn)])
        except Exception as exc:  # noqa: BLE001 - said by the assertion below
            failed.append(repr(exc))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failed and sorted(applied) == [[], [], [], [SCHEMA_VERSION]]
