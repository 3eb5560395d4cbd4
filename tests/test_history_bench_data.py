"""The history bench's record (scripts/history_data.py), on a real PostgreSQL: the
generated events land in the real schema's day partitions with their steps, in the
states the relay knows, and every query the bench times finds rows through an index
(never a sequential scan of a partition), so the bench measures what it says."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from relay.history.story import STATES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import history_data  # noqa: E402

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_generated_events_fill_the_schema_day_by_day(pg_dsn: str) -> None:
    history_data.generate(pg_dsn, 3_000, days=3, now=NOW, say=lambda _: None)
    with psycopg.connect(pg_dsn) as conn:
        days = conn.execute(
            "SELECT c.relname, count(*) FROM pd_relay.events e JOIN pg_class c "
            "ON c.oid = e.tableoid GROUP BY 1 ORDER BY 1").fetchall()
        assert days == [("events_20261203", 1000), ("events_20261204", 1000),
                        ("events_20261205", 1000)]
        assert conn.execute("SELECT count(DISTINCT id) FROM pd_relay.events").fetchone() == (
            3000,)
        steps = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM pd_relay.steps"
                             ).fetchone()
        assert steps == (9000, 3000)
        states = {row[0] for row in conn.execute("SELECT DISTINCT state FROM pd_relay.events")}
        assert states <= set(STATES) and "delivered" in states
        first = conn.execute("SELECT step FROM pd_relay.steps WHERE at = (SELECT min(at) "
                             "FROM pd_relay.steps)").fetchone()
        assert first == ("accepted",)
        times = conn.execute("SELECT min(accepted_at), max(accepted_at) FROM pd_relay.events"
                             ).fetchone()
        assert times is not None and times[0] >= datetime(2026, 12, 3, tzinfo=UTC)
        assert times[1] < datetime(2026, 12, 6, tzinfo=UTC)


def test_every_timed_query_finds_rows_through_an_index(pg_dsn: str) -> None:
    history_data.generate(pg_dsn, 20_000, days=4, now=NOW, say=lambda _: None)
    with psycopg.connect(pg_dsn) as conn:
        params = history_data.samples(conn, 8)
        found = history_data.timings(conn, history_data.queries(conn), params)
        assert set(found) == {"dedup_key", "sender", "source", "page", "trace"}
        assert all(figures["rows"] > 0 for figures in found.values()), found
        assert all(0 < figures["p50"] <= figures["p99"] for figures in found.values())
        traced: list[str] = []
        conn.add_notice_handler(lambda _: None)
        original = conn.execute

        def explain(sql: object, args: object = None) -> object:
            traced.append("\n".join(row[0] for row in original(
                "EXPLAIN " + str(sql), args).fetchall()))  # type: ignore[arg-type]
            return original(sql, args)  # type: ignore[arg-type]

        conn.execute = explain  # type: ignore[method-assign]
        for name, query in history_data.queries(conn).items():
            query(params[name][1])
        assert len(traced) >= 5
        for plan in traced:
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan
