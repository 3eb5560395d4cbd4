"""The record's writing side against a real PostgreSQL (the ``pg_dsn`` fixture): the
migration runner, the writer (steps and events, idempotent, states in any commit order)
and the partitions (made, dropped by retention)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import fakeredis
import psycopg
import pytest

from relay.app import create_app
from relay.errors import RecordDown, RecordFormatError
from relay.history import History
from relay.history.entries import Step, steps_of
from relay.history.pg import SCHEMA_VERSION
from relay.history.pg.connect import connect
from relay.history.pg.migrate import migrate, require, version
from relay.history.pg.partitions import DAY_MS, Partitions
from relay.history.pg.writer import write
from relay.names import Names
from relay.settings import Settings

NAMES = Names("pdr")


@pytest.fixture
def conn(pg_dsn: str):
    with connect(pg_dsn, autocommit=True) as connection:
        migrate(connection)
        yield connection


def stream_steps(fake: fakeredis.FakeRedis) -> list[Step]:
    return [step for entry_id, fields in fake.xrange(NAMES.history)
            for step in steps_of(entry_id, fields)]


def accept(settings: Settings, fake: fakeredis.FakeRedis, events: list[dict]) -> None:
    app = create_app(replace(settings, history_dsn="postgresql://u:pw@127.0.0.1/x"),
                     client=fake).test_client()
    assert app.post("/v2/enqueue", json=events).status_code == 202


def test_migrate_makes_the_schema_once_and_says_its_version(pg_dsn: str) -> None:
    with connect(pg_dsn, autocommit=True) as conn:
        assert version(conn) == 0
        with pytest.raises(RecordFormatError, match="history migrate"):
            require(conn)
        assert [m.version for m in migrate(conn)] == [1]
        assert migrate(conn) == []  # again: nothing
        assert version(conn) == require(conn) == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'pd_relay'")}
        assert {"events", "steps", "migrations"} <= tables


def test_a_database_a_later_release_migrated_is_refused(pg_dsn: str) -> None:
    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO pd_relay.migrations (version, name) VALUES (%s, 'later')",
                     (SCHEMA_VERSION + 1,))
        for act in (migrate, require):
            with pytest.raises(RecordFormatError, match="later release"):
                act(conn)


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(RecordDown) as caught:
        connect("postgresql://relay:s3cretpw@127.0.0.1:1/db", timeout_s=1)
    assert "s3cretpw" not in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert "relay:***@" in str(caught.value)


def test_accepted_attempt_delivered_and_dead_steps_with_the_payloads_columns(
        conn, settings: Settings, fake: fakeredis.FakeRedis) -> None:
    accept(settings, fake, [
        {"event_action": "trigger", "dedup_key": "db1-disk", "payload": {
            "summary": "disk full on db1", "source": "db1", "severity": "critical",
            "component": "disk", "class": "storage", "group": "dbs"}},
        {"event_action": "trigger", "dedup_key": "web-5xx", "payload": {
            "summary": "5xx on web", "source": "web1", "severity": "error"}}])
    accepted = stream_steps(fake)
    by_key = {step.dedup_key: step for step in accepted}
    history = History(fake, NAMES, settings)
    disk, web = by_key["db1-disk"], by_key["web-5xx"]
    history.note("attempt", 0, i=disk.event_id, d="db1-disk", o="retry", st=500, k="ops")
    history.note("delivered", 0, i=disk.event_id, d="db1-disk", r="ok", k="ops")
    history.note("dead", 0, i=web.event_id, d="web-5xx", e="invalid", st=400, dl="x1")
    written = write(conn, stream_steps(fake), settings.key_names, Partitions())
    assert (written.events, written.steps) == (2, 5)
    row = conn.execute(
        "SELECT dedup_key, action, kind, severity, summary, source, component, class, "
        "event_group, sender, state, payload->'e'->>'dedup_key', key_name, slot "
        "FROM pd_relay.events WHERE id = %s", (disk.event_id,)).fetchone()
    assert row[:11] == ("db1-disk", "trigger", "alert", "critical", "disk full on db1",
                        "db1", "disk", "storage", "dbs", "anonymous", "delivered")
    assert row[11] == "db1-disk" and row[13] == disk.slot and row[12]
    assert conn.execute("SELECT state FROM pd_relay.events WHERE id = %s",
                        (web.event_id,)).fetchone() == ("dead",)
    steps = conn.execute("SELECT step, detail FROM pd_relay.steps WHERE event_id = %s "
                         "ORDER BY at, entry, n", (disk.event_id,)).fetchall()
    assert [s for s, _ in steps] == ["accepted", "attempt", "delivered"]
    assert "p" not in steps[0][1] and steps[1][1]["st"] == 500
    for key in settings.routing_keys:  # never a routing key, anywhere in the record
        dumped = json.dumps(conn.execute("SELECT json_agg(e) FROM pd_relay.events e")
                            .fetchone()[0]) + json.dumps(conn.execute(
                                "SELECT json_agg(s) FROM pd_relay.steps s").fetchone()[0])
        assert key not in dumped


def test_written_again_writes_nothing_twice(conn, settings, fake) -> None:
    accept(settings, fake, [{"event_action": "trigger", "dedup_key": f"d{n}", "payload": {
        "summary": "s", "source": "h", "severity": "info"}} for n in range(20)])
    steps = stream_steps(fake)
    partitions = Partitions()
    assert write(conn, steps, settings.key_names, partitions).steps == 20
    again = write(conn, steps, settings.key_names, partitions)
    assert (again.events, again.steps) == (0, 0)
    assert conn.execute("SELECT count(*) FROM pd_relay.steps").fetchone() == (20,)
    assert conn.execute("SELECT count(*) FROM pd_relay.events").fetchone() == (20,)


def test_the_state_is_the_storys_whatever_order_the_steps_come_in(
        conn, settings, fake) -> None:
    accept(settings, fake, [{"event_action": "trigger", "dedup_key": "k", "payload": {
        "summary": "s", "source": "h", "severity": "info"}}])
    [first] = stream_steps(fake)
    history = History(fake, NAMES, settings)
    history.note("attempt", 0, i=first.event_id, d="k", o="retry")
    history.note("delivered", 0, i=first.event_id, d="k", r="ok")
    accepted, attempt, delivered = stream_steps(fake)
    partitions = Partitions()
    state = "SELECT state, updated_at FROM pd_relay.events"
    write(conn, [delivered], settings.key_names, partitions)  # before its event exists
    write(conn, [accepted], settings.key_names, partitions)
    assert conn.execute(state).fetchone()[0] == "delivered"
    write(conn, [attempt], settings.key_names, partitions)  # an older step, later
    found, updated = conn.execute(state).fetchone()
    assert found == "delivered" and int(updated.timestamp() * 1000) == delivered.at_ms


def test_a_held_event_keeps_how_it_was_held(conn) -> None:
    held = Step("1000-0", 0, "accepted", "e1", "k", 0, 1000, {"a": "trigger", "h": "dropped"})
    write(conn, [held], (), Partitions())
    assert conn.execute("SELECT state FROM pd_relay.events").fetchone() == ("dropped",)


def test_partitions_are_made_a_day_each_and_dropped_whole_past_retention(conn) -> None:
    partitions = Partitions()
    day = 20_000 * DAY_MS  # 2024-10-04 00:00 UTC
    steps = [Step(f"{day + n * DAY_MS + 5}-0", 0, "attempt", f"e{n}", "k", 0,
                  day + n * DAY_MS + 5, {}) for n in range(3)]
    write(conn, steps, (), partitions)
    made = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE "
                                       "schemaname = 'pd_relay' AND tablename LIKE 'steps_%'")}
    assert made == {"steps_20241004", "steps_20241005", "steps_20241006"}
    assert partitions.ensure(conn, [date(2024, 10, 4)]) == []  # known: no catalog look-up
    # 1.25 days kept at 2024-10-07 06:00 (from 10-06 00:00): the 4th and 5th wholly older
    dropped = partitions.drop_older(conn, 1.25, day + 3 * DAY_MS + 6 * 3_600_000)
    assert sorted(dropped) == ["events_20241004", "events_20241005", "steps_20241004",
                               "steps_20241005"]
    assert conn.execute("SELECT count(*) FROM pd_relay.steps").fetchone() == (1,)
    write(conn, steps[:1], (), partitions)  # a late step of a dropped day: made again
    assert conn.execute("SELECT count(*) FROM pd_relay.steps").fetchone() == (2,)


def test_two_exporters_making_the_same_partitions_at_once(pg_dsn: str) -> None:
    import threading

    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
    failures: list[BaseException] = []

    def make() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as mine:
                Partitions().ahead(mine, 19_000 * DAY_MS)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []


def test_nul_characters_postgresql_refuses_are_dropped_not_fatal(conn) -> None:
    stored = {"t": 1000, "k": "alert", "i": "e1", "e": {
        "event_action": "trigger", "dedup_key": "k\x00", "payload": {
            "summary": "disk\x00 full", "source": "h", "severity": "info",
            "custom_details": {"x\x00": ["\x00"]}}}}
    step = Step("1000-0", 0, "accepted", "e1", "k\x00", 1, 1000,
                {"a": "trigger", "c": "1.2.3.4\x00", "p": json.dumps(stored)})
    assert write(conn, [step], ("ops",), Partitions()).events == 1
    assert conn.execute("SELECT dedup_key, summary, payload->'e'->'payload'->"
                        "'custom_details' FROM pd_relay.events").fetchone() == (
        "k", "disk full", {"x": [""]})


def scanned(conn) -> dict[str, int]:
    """The record's partitions PostgreSQL has read so far (sequential or index scans)."""
    conn.execute("SELECT pg_stat_force_next_flush()")  # this backend's counts, now
    return dict(conn.execute(
        "SELECT relname, seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        "WHERE schemaname = 'pd_relay' AND relname ~ '^(events|steps)_'").fetchall())


def test_a_batch_reads_the_partitions_of_its_own_days_not_every_day(conn) -> None:
    """The states are computed again for a batch's events without looking them up in every
    day's partition: a month of events stored, a batch of today reads at most the
    partitions of today and the day before (where its events were accepted)."""
    partitions = Partitions()
    day = 20_000 * DAY_MS
    for n in range(30):  # an event a day, accepted and delivered
        at = day + n * DAY_MS + 5
        write(conn, [Step(f"{at}-0", 0, "accepted", f"old{n}", "k", 1, at, {"a": "trigger"}),
                     Step(f"{at + 1}-0", 0, "delivered", f"old{n}", "k", 0, at + 1, {})],
              (), partitions)
    today = day + 29 * DAY_MS + 3_600_000
    batch = [Step(f"{today}-0", 0, "accepted", "new", "k", 1, today, {"a": "trigger"}),
             Step(f"{today + 1}-0", 0, "attempt", "new", "k", 0, today + 1, {}),
             Step(f"{today + 2}-0", 0, "delivered", "new", "k", 0, today + 2, {})]
    before = scanned(conn)
    write(conn, batch, (), partitions)
    after = scanned(conn)
    read = sorted(name for name, count in after.items() if count > before.get(name, 0))
    assert read and len(read) <= 4, read  # events and steps of 20241102 and 20241101
    assert conn.execute("SELECT state FROM pd_relay.events WHERE id = 'new'").fetchone() \
        == ("delivered",)


def test_an_event_retried_for_days_still_gets_its_state(conn) -> None:
    """An event accepted long before its batch (out of the batch's window): its state is
    still brought up to date (looked up in every partition)."""
    partitions = Partitions()
    day = 20_000 * DAY_MS
    write(conn, [Step(f"{day}-0", 0, "accepted", "e1", "k", 1, day, {"a": "trigger"})], (),
          partitions)
    later = day + 10 * DAY_MS
    write(conn, [Step(f"{later}-0", 0, "attempt", "e1", "k", 0, later, {}),
                 Step(f"{later}-1", 0, "accepted", "e2", "k", 1, later, {"a": "trigger"})],
          (), partitions)
    assert conn.execute("SELECT id, state FROM pd_relay.events ORDER BY id").fetchall() == [
        ("e1", "retrying"), ("e2", "queued")]
    write(conn, [Step(f"{later + 5}-0", 0, "delivered", "e1", "k", 0, later + 5, {})], (),
          partitions)
    assert conn.execute("SELECT state, updated_at FROM pd_relay.events WHERE id = 'e1'"
                        ).fetchone()[0] == "delivered"
