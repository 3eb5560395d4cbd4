"""Reading the record in PostgreSQL: the events a query asks for and their steps, each
query on an index of migration 1 (``tests/test_history_pg_plans.py`` holds them to it).

Connections are few and kept (a search answers in milliseconds; connecting with a SCRAM
password costs more than the search), each with a statement timeout, so that a slow
PostgreSQL fails a search (a 503) instead of holding the page's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from relay.errors import RecordDown, RecordFormatError
from relay.history.pg import SCHEMA
from relay.history.pg.connect import connect
from relay.history.pg.migrate import require
from relay.history.search import Query

EVENT_COLUMNS = ("id", "accepted_at", "severity", "summary", "source", "key_name", "state")
STEP_COLUMNS = ("entry", "n", "event_id", "dedup_key", "step", "slot", "detail")
WINDOW = 5000  # the newest events a summary search reads first, along the time index


class Record:
    """The record's connections: at most ``keep`` kept idle between searches, and at most
    ``most`` searches at once (the others RecordDown at once: the API shares the ingress's
    threads with the events, which must not all wait on a PostgreSQL that does not
    answer)."""

    def __init__(self, dsn: str, timeout_s: float = 5.0, keep: int = 4,
                 most: int = 4) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self.idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue(keep)
        self.most = most
        self.gate = threading.BoundedSemaphore(most)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a read-only REPEATABLE READ transaction (one snapshot for a
        search's queries); dropped, not kept, after an error."""
        if not self.gate.acquire(blocking=False):
            raise RecordDown([f"PostgreSQL: {self.most} searches wait for it already"])
        try:
            conn = self._begun()
            try:
                yield conn
                conn.execute("COMMIT")  # read only: ends the snapshot
            except BaseException:
                conn.close()
                raise
        finally:
            self.gate.release()
        try:
            self.idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _begun(self) -> psycopg.Connection[Any]:
        """A kept connection with its transaction begun, or a new one: a kept one whose
        server process has ended since (a restart, a failover, an idle timeout) fails its
        BEGIN, and is dropped for the next (else each kept one was a 503 after a restart)."""
        while True:
            try:
                conn, kept = self.idle.get_nowait(), True
            except queue.Empty:
                conn, kept = self.connect(), False
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return conn
            except psycopg.OperationalError:
                conn.close()
                if not kept:
                    raise

    def connect(self) -> psycopg.Connection[Any]:
        """RecordDown (naming the server by its masked DSN) when it cannot, or when the
        record's schema is not this release's (not migrated yet, or by a later release:
        saying what to do)."""
        conn = connect(self.dsn, autocommit=True, timeout_s=self.timeout_s,
                       statement_timeout_ms=int(self.timeout_s * 1000))
        try:
            require(conn)
        except RecordFormatError as exc:
            conn.close()
            raise RecordDown([str(exc)]) from None
        except BaseException:
            conn.close()
            raise
        conn.row_factory = dict_row  # type: ignore[assignment]
        return conn

    def close(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


def events(conn: psycopg.Connection[Any], query: Query, rejudged: list[str],
           limit: int) -> list[dict[str, Any]]:
    """The events ``query`` asks for, newest first, at most ``limit`` (0: all). A state
    is the record's for the rest; ``rejudged`` events (steps in the stream's tail) are
    taken whatever their state here, to be judged again with all their steps (a query of
    their own, by id: each on its index)."""
    found = _events(conn, query, limit)
    if query.state is not None and rejudged:
        seen = {row["id"] for row in found}
        found += [row for row in _events(conn, replace(query, state=None), limit, rejudged)
                  if row["id"] not in seen]
        found.sort(key=lambda row: row["accepted_at"], reverse=True)
    return found[:limit] if limit else found


def _events(conn: psycopg.Connection[Any], query: Query, limit: int,
            ids: list[str] | None = None) -> list[dict[str, Any]]:
    if query.text is not None and limit and ids is None:
        found = _newest(conn, query, limit)
        if len(found) >= limit:  # a common word: the newest WINDOW events fill the page
            return found
    where, args = where_of(query)
    if query.state is not None:
        where.append("state = %s")
        args.append(query.state)
    if ids is not None:
        where.append("id = ANY(%s)")
        args.append(ids)
    sql = (f"SELECT {', '.join(EVENT_COLUMNS)} FROM {SCHEMA}.events"
           f"{' WHERE ' + ' AND '.join(where) if where else ''}")
    if query.text is not None:  # the trigram index finds them all, then the newest: not
        # a walk back through time filtering every summary (a rare word: the whole record)
        sql = f"WITH found AS MATERIALIZED ({sql}) SELECT * FROM found"
    sql += " ORDER BY accepted_at DESC"
    if limit:
        sql += " LIMIT %s"
        args.append(limit)
    return list(conn.execute(sql.encode(), args).fetchall())


def _newest(conn: psycopg.Connection[Any], query: Query, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` events holding ``query.text`` among the newest ``WINDOW`` the
    rest of the query finds: the newest of all when there are ``limit`` of them (a word
    in many summaries: the trigram path read every one of them, a whole record's worth
    for "db"); fewer, and the trigram path finds the rest."""
    where, args = where_of(replace(query, text=None))
    if query.state is not None:
        where.append("state = %s")
        args.append(query.state)
    columns = ", ".join(EVENT_COLUMNS)
    sql = (f"SELECT {columns} FROM (SELECT {columns} FROM {SCHEMA}.events"
           f"{' WHERE ' + ' AND '.join(where) if where else ''}"
           " ORDER BY accepted_at DESC LIMIT %s) AS newest WHERE summary ILIKE %s"
           " ORDER BY accepted_at DESC LIMIT %s")
    args += [WINDOW, "%" + like_escaped(str(query.text)) + "%", limit]
    return list(conn.execute(sql.encode(), args).fetchall())


def steps_of_events(conn: psycopg.Connection[Any], ids: list[str],
                    since: datetime) -> list[dict[str, Any]]:
    """Every step the record holds of the events ``ids``, none before ``since`` (their
    oldest acceptance: the partitions before it are not read)."""
    if not ids:
        return []
    sql = (f"SELECT {', '.join(STEP_COLUMNS)} FROM {SCHEMA}.steps "
           "WHERE event_id = ANY(%s) AND at >= %s")
    return list(conn.execute(sql.encode(), [ids, since]).fetchall())


def steps_by(conn: psycopg.Connection[Any], dedup_key: str | None,
             event_id: str | None) -> list[dict[str, Any]]:
    """Every step of an incident (``dedup_key``) or of one event, accepted step lost or not."""
    column, value = ("dedup_key", dedup_key) if dedup_key is not None else ("event_id", event_id)
    sql = f"SELECT {', '.join(STEP_COLUMNS)} FROM {SCHEMA}.steps WHERE {column} = %s"
    args: list[Any] = [value]
    if dedup_key is not None and event_id is not None:
        sql += " AND event_id = %s"
        args.append(event_id)
    return list(conn.execute(sql.encode(), args).fetchall())


def matching(conn: psycopg.Connection[Any], texts: list[str], text: str) -> list[bool]:
    """Whether each of ``texts`` holds ``text`` as the record's search says it (ILIKE:
    the case folding of the database's locale), for the summaries not in the record yet."""
    if not texts:
        return []
    sql = ("SELECT coalesce(t ILIKE %s, false) AS hit FROM unnest(%s::text[]) "
           "WITH ORDINALITY AS u(t, n) ORDER BY n")
    clean = [t.replace("\x00", "") for t in texts]  # as the exporter writes them
    return [bool(row["hit"]) for row in conn.execute(
        sql.encode(), ["%" + like_escaped(text) + "%", clean]).fetchall()]


def where_of(query: Query) -> tuple[list[str], list[Any]]:
    """The conditions of ``query`` but its state, each on an indexed column."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("id", query.event_id), ("dedup_key", query.dedup_key),
                          ("sender", query.source), ("route", query.route),
                          ("severity", query.severity), ("key_name", query.key),
                          ("source", query.payload_source)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if query.text is not None:
        where.append("summary ILIKE %s")
        args.append("%" + like_escaped(query.text) + "%")
    if query.since_ms is not None:
        where.append("accepted_at >= %s")
        args.append(moment(query.since_ms))
    if query.until_ms is not None:
        where.append("accepted_at < %s")
        args.append(moment(query.until_ms))
    return where, args


def like_escaped(text: str) -> str:
    """``text`` matched as itself by LIKE (its default escape is the backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(max(0, ms) / 1000, UTC)
