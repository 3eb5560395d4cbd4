"""Every query the readers make is served by an index of migration 1 (EXPLAIN on a real
PostgreSQL with sequential scans made the planner's last resort: a query no index can
serve still plans a Seq Scan, and fails here), and reads only the partitions its time
range needs."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from relay.history.pg import reader
from relay.history.pg.connect import connect
from relay.history.pg.partitions import DAY_MS, Partitions, day_of
from relay.history.search import Query
from relay.stack.postgres import LocalPostgres
from tests.pg_rows import migrated

NOW_MS = 1_800_000_000_000
ROWS = 20_000  # events over 5 days: enough for the planner to choose as with millions
FILL = """
INSERT INTO pd_relay.events (id, accepted_at, entry, dedup_key, action, severity, summary,
    source, route, sender, key_name, slot, state, updated_at)
SELECT lpad(to_hex(g), 16, '0'), at, ms::text || '-0', 'dk-' || (g %% 4000), 'trigger',
    (ARRAY['critical', 'error', 'warning', 'info'])[1 + g %% 4],
    'host-' || g || ' ' || md5(g::text), 'host-' || (g %% 500), 'route-' || (g %% 20),
    'sender-' || (g %% 30), 'key-' || (g %% 3), 1 + g %% 3,
    (ARRAY['delivered', 'delivered', 'delivered', 'queued', 'dead'])[1 + g %% 5], at
FROM generate_series(1, %(count)s) AS g,
     LATERAL (SELECT %(now)s - (g * 7919) %% %(spread)s AS ms) AS t,
     LATERAL (SELECT to_timestamp(ms / 1000.0) AS at) AS u
"""
FILL_STEPS = """
INSERT INTO pd_relay.steps (entry, n, at, event_id, dedup_key, step, slot, key_name, detail)
SELECT entry, 0, accepted_at, id, dedup_key, 'accepted', slot, key_name, '{}'
FROM pd_relay.events
"""


class Explained:
    """A connection whose queries answer their plans."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: bytes, args: Any = None) -> Any:
        return self.conn.execute(b"EXPLAIN " + sql, args)


@pytest.fixture(scope="module")
def conn(postgres_server: LocalPostgres):
    """One database for the module's plans (filled once), dropped after."""
    name = "t_plans_" + secrets.token_hex(4)
    postgres_server.create_database(name)
    dsn = postgres_server.dsn(name)
    migrated(dsn)
    with connect(dsn, autocommit=True) as conn:
        Partitions().ensure(conn, {day_of(NOW_MS - n * DAY_MS) for n in range(5)})
        conn.execute(FILL, {"now": NOW_MS, "spread": 5 * DAY_MS - 1, "count": ROWS})
        conn.execute(FILL_STEPS)
        conn.execute("ANALYZE pd_relay.events")
        conn.execute("ANALYZE pd_relay.steps")
        conn.execute("SET enable_seqscan = off")
        yield conn
    with psycopg.connect(postgres_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def plan(rows: list[Any]) -> str:
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(("query", "index"), [
    (Query(), "_accepted_at_idx"),  # a page of the list: newest first
    (Query(dedup_key="disk-db1"), "_dedup_key_accepted_at_idx"),
    (Query(source="grafana", since_ms=NOW_MS - DAY_MS, until_ms=NOW_MS),  # a sender, a day
     "_sender_accepted_at_idx"),
    (Query(route="db"), "_route_accepted_at_idx"),
    (Query(state="dead"), "_state_accepted_at_idx"),
    (Query(severity="critical"), "_severity_accepted_at_idx"),
    (Query(key="db"), "_key_name_accepted_at_idx"),
    (Query(payload_source="db1"), "_source_accepted_at_idx"),
    (Query(text="disk full"), "_summary_idx"),  # the trigram index
    (Query(event_id="0123456789abcdef", limit=1), "_pkey"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_each_search_of_events_uses_its_index(conn, query: Query, index: str) -> None:
    shown = plan(reader.events(Explained(conn), query, [], 50))
    assert "Seq Scan" not in shown, shown
    used = set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using \S+?(_[a-z_]+) on", shown)
               + re.findall(r"Bitmap Index Scan on \S+?\d{8}(_[a-z_]+)", shown))
    assert index in used, shown


def test_the_events_with_steps_in_the_tail_are_found_by_id(conn) -> None:
    shown = plan(reader._events(Explained(conn), Query(route="route-1"), 50,
                                ["0123456789abcdef"]))
    assert "Seq Scan" not in shown and "_pkey" in shown, shown


def test_a_day_reads_only_that_days_partition(conn) -> None:
    day = datetime.fromtimestamp(NOW_MS / 1000, UTC).strftime("%Y%m%d")
    shown = plan(reader.events(Explained(conn), Query(source="grafana", since_ms=NOW_MS - 1000,
                                                      until_ms=NOW_MS + 1000), [], 50))
    assert set(re.findall(r" on (events_\d+)", shown)) == {f"events_{day}"}, shown


def test_steps_of_events_and_of_an_incident_use_an_index(conn) -> None:
    since = datetime.fromtimestamp((NOW_MS - DAY_MS) / 1000, UTC)
    for shown in (plan(reader.steps_of_events(Explained(conn), ["a", "b"], since)),
                  plan(reader.steps_by(Explained(conn), "disk-db1", None)),
                  plan(reader.steps_by(Explained(conn), None, "0123456789abcdef"))):
        assert "Seq Scan" not in shown and "Index" in shown, shown
    shown = plan(reader.steps_of_events(Explained(conn), ["a"], since))
    assert len(set(re.findall(r" on (steps_\d+)", shown))) == 2, shown  # not the 3 before
