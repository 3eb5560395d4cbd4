"""The history drill's judge of the record (scripts/history_drill.py ``recorded``), on a
real PostgreSQL: an accepted event missing from the record, one recorded twice and one
without its end are each counted, so the drill can fail."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import history_data  # noqa: E402
import history_drill  # noqa: E402

AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def event(conn: psycopg.Connection[object], n: int, dedup_key: str, action: str,
          steps: tuple[str, ...]) -> None:
    at = AT + timedelta(seconds=n)
    conn.execute("INSERT INTO pd_relay.events (id, accepted_at, entry, dedup_key, action, "
                 "state, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (f"{n:016x}", at, f"{n}-0", dedup_key, action, steps[-1], at))
    for k, step in enumerate(steps):
        conn.execute("INSERT INTO pd_relay.steps (entry, n, at, event_id, dedup_key, step, "
                     "detail) VALUES (%s, 0, %s, %s, %s, %s, %s)",
                     (f"{n}-{k}", at, f"{n:016x}", dedup_key, step, json.dumps({})))


def test_the_record_judge_counts_missing_twice_and_unfinished(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        history_data.migrate(conn)
        history_data.partition(conn, AT)
        event(conn, 1, "history-00000", "trigger", ("accepted", "attempt", "delivered"))
        event(conn, 2, "history-00000", "acknowledge", ("accepted", "delivered"))
        event(conn, 3, "history-00000", "acknowledge", ("accepted", "delivered"))  # twice
        event(conn, 4, "history-00001", "trigger", ("accepted", "attempt"))  # no end yet
        event(conn, 5, "history-00009", "trigger", ("accepted", "delivered"))  # not sent
        conn.commit()
    accepted = ["history-00000/0", "history-00000/1", "history-00000/2", "history-00001/0"]
    assert history_drill.recorded(pg_dsn, accepted) == {
        "found": 3, "missing": 1, "twice": 1, "unfinished": 1}
    assert history_drill.recorded(pg_dsn, accepted[:2]) == {
        "found": 2, "missing": 0, "twice": 1, "unfinished": 0}


def test_the_drill_says_why_it_is_skipped_without_a_postgresql_server(monkeypatch) -> None:
    from relay.errors import ConfigError

    def missing() -> None:
        raise ConfigError(["no PostgreSQL server on this machine"])

    monkeypatch.setattr(history_drill, "binaries", lambda: Path("/usr/lib/postgresql/15/bin"))
    assert history_drill.skipped() == ""
    monkeypatch.setattr(history_drill, "binaries", missing)
    assert "no PostgreSQL server" in history_drill.skipped()
