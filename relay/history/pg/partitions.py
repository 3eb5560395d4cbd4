"""The record's partitions: a day each (``events_YYYYMMDD``, ``steps_YYYYMMDD``, from
00:00 UTC), made by the exporter before it writes a day's rows, and dropped whole by
retention once older than ``RELAY_HISTORY_DAYS`` (no row is deleted one by one).

Several exporters may make or drop them at once: each does so in a transaction of its
own under an advisory lock, after looking again under it (``CREATE TABLE IF NOT EXISTS``
alone still races in PostgreSQL's catalog).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import psycopg

from relay.history.pg import SCHEMA

log = logging.getLogger(__name__)

TABLES = ("events", "steps")
LOCK = 0x7064725F70617274  # pg_advisory_xact_lock's key while making or dropping ("pdr_part")
DAY_MS = 86_400_000
AHEAD_DAYS = 1  # made ahead: today's and tomorrow's, so midnight waits for no DDL
RETENTION_LOCK_MS = 1_000  # the most retention's DDL waits for a table's lock: a reader's
# long transaction (an auditor's export) holds it, and a DDL waiting queues every write
# and read of the table behind it; retention gives up (LockNotAvailable) and comes back


def day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def name(table: str, day: date) -> str:
    return f"{table}_{day:%Y%m%d}"


def existing(conn: psycopg.Connection) -> dict[str, set[date]]:
    """The days each table has a partition for."""
    found: dict[str, set[date]] = {table: set() for table in TABLES}
    rows = conn.execute(
        "SELECT p.relname, c.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname = ANY(%s)", (SCHEMA, list(TABLES))).fetchall()
    for parent, child in rows:
        day = _day(child, parent)
        if day is not None:
            found[parent].add(day)
    return found


class Partitions:
    """What this process knows exists, so that a batch costs no catalog look-up."""

    def __init__(self) -> None:
        self.known: set[date] = set()

    def ensure(self, conn: psycopg.Connection, days: Iterable[date],
               lock_ms: int | None = None) -> list[str]:
        """Make the partitions of ``days`` that do not exist yet (``conn`` in autocommit:
        DDL in a short transaction of its own); return the ones made. ``lock_ms``: the
        most to wait for a lock (else LockNotAvailable)."""
        wanted = set(days) - self.known
        if not wanted:
            return []
        made: list[str] = []
        with conn.transaction():
            _lock_timeout(conn, lock_ms)
            have = existing(conn)
            if any(wanted - have[table] for table in TABLES):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
                have = existing(conn)
                for day in sorted(wanted):
                    for table in TABLES:
                        if day not in have[table]:
                            _create(conn, table, day)
                            made.append(name(table, day))
        self.known |= wanted
        if made:
            log.info("history record: partitions %s made", ", ".join(made))
        return made

    def ahead(self, conn: psycopg.Connection, now_ms: int) -> list[str]:
        """Today's and the next ``AHEAD_DAYS``' partitions."""
        today = day_of(now_ms)
        return self.ensure(conn, (today + timedelta(days=n) for n in range(AHEAD_DAYS + 1)),
                           RETENTION_LOCK_MS)

    def drop_older(self, conn: psycopg.Connection, days: float, now_ms: int) -> list[str]:
        """Drop the partitions wholly older than ``days`` before ``now_ms`` (a day's
        partition goes once its last instant is); return their names. Waits for a lock
        at most ``RETENTION_LOCK_MS`` (else LockNotAvailable, nothing dropped)."""
        cutoff = now_ms - int(days * DAY_MS)
        dropped: list[str] = []
        with conn.transaction():
            _lock_timeout(conn, RETENTION_LOCK_MS)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            for table, found in existing(conn).items():
                for day in sorted(found):
                    if _start_ms(day + timedelta(days=1)) <= cutoff:
                        conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{name(table, day)}")
                        dropped.append(name(table, day))
                        self.known.discard(day)
        if dropped:
            log.info("history record: partitions older than %g days dropped: %s", days,
                     ", ".join(dropped))
        return dropped


def _lock_timeout(conn: psycopg.Connection, lock_ms: int | None) -> None:
    if lock_ms is not None:
        conn.execute(f"SET LOCAL lock_timeout = {int(lock_ms)}")


def _create(conn: psycopg.Connection, table: str, day: date) -> None:
    start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
    conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{name(table, day)} PARTITION OF "
                 f"{SCHEMA}.{table} FOR VALUES FROM ('{start} 00:00:00+00') "
                 f"TO ('{end} 00:00:00+00')")


def _start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _day(child: str, table: str) -> date | None:
    stem = child.removeprefix(table + "_")
    try:
        return datetime.strptime(stem, "%Y%m%d").date() if len(stem) == 8 else None
    except ValueError:
        return None
