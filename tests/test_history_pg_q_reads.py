"""``?q=`` on a large record reads a bounded number of rows for a common word (the newest
events first along the time index fill a page), and still finds a rare one anywhere (the
trigram index): counted by PostgreSQL's own statistics of this transaction, not timed."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest

from relay.history.pg import reader
from relay.history.pg.connect import connect
from relay.history.pg.partitions import DAY_MS, Partitions, day_of
from relay.history.search import Query
from relay.stack.postgres import LocalPostgres
from tests.pg_rows import migrated
from tests.test_history_pg_plans import FILL, NOW_MS

ROWS = 20_000


@pytest.fixture(scope="module")
def conn(postgres_server: LocalPostgres):
    name = "t_q_" + secrets.token_hex(4)
    postgres_server.create_database(name)
    dsn = postgres_server.dsn(name)
    migrated(dsn)
    with connect(dsn, autocommit=True) as conn:
        conn.row_factory = psycopg.rows.dict_row  # type: ignore[assignment]
        Partitions().ensure(conn, {day_of(NOW_MS - n * DAY_MS) for n in range(5)})
        conn.execute(FILL, {"now": NOW_MS, "spread": 5 * DAY_MS - 1, "count": ROWS})
        conn.execute("VACUUM ANALYZE pd_relay.events")
        yield conn
    with psycopg.connect(postgres_server.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def rows_read(conn: psycopg.Connection[Any], query: Query) -> tuple[int, int]:
    """(events found, rows of pd_relay.events read: by scans and index fetches)."""
    with conn.transaction():
        found = reader.events(conn, query, [], 50)
        [row] = conn.execute(
            "SELECT sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)) AS n "
            "FROM pg_stat_xact_user_tables WHERE schemaname = 'pd_relay' "
            "AND relname LIKE 'events_%'").fetchall()
    return len(found), int(row["n"] or 0)


@pytest.mark.parametrize("text", ["host", "HOST-1", "o"])
def test_a_common_word_reads_a_bounded_number_of_events(conn, text) -> None:
    found, read = rows_read(conn, Query(text=text))
    assert found == 50
    assert read <= reader.WINDOW, read  # not every event holding it (all 20,000 for "host")


def test_a_rare_word_is_still_found_anywhere(conn) -> None:
    [oldest] = conn.execute("SELECT summary FROM pd_relay.events ORDER BY accepted_at "
                            "LIMIT 1").fetchall()
    word = oldest["summary"].split(" ")[1][:12]  # its md5's beginning: in no other
    found = reader.events(conn, Query(text=word.upper()), [], 50)
    assert [row["summary"] for row in found] == [oldest["summary"]]


@pytest.mark.parametrize("query", [Query(text="host"), Query(text="host", severity="error"),
                                   Query(text="host", state="dead", since_ms=NOW_MS - DAY_MS)],
                         ids=str)
def test_the_newest_first_read_is_on_an_index(conn, query) -> None:
    class Explained:
        def execute(self, sql: bytes, args: Any = None) -> Any:
            return conn.execute(b"EXPLAIN " + sql, args)

    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # as tests/test_history_pg_plans.py
        shown = "\n".join(row["QUERY PLAN"] for row in reader._newest(Explained(), query, 50))
    assert "Seq Scan" not in shown and "Index" in shown, shown
