"""``pd-relay history export``: the record's events for auditors, as CSV or JSON lines,
to standard output or a file, oldest first.

Streamed: a server-side cursor hands the rows over a batch at a time, so months of events
take the memory of one batch. The record only (``RELAY_HISTORY_DSN``): the stream's last
seconds not yet exported are not in it (``pd-relay status`` says how far behind it is).
CSV cells a spreadsheet would take for a formula (starting ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return) get a leading ``'``: senders write summaries, and an auditor's
spreadsheet must not run them. JSON lines hold the values as stored, with each event's
stored payload (no routing key) and its steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import IO, Any

import psycopg

from relay.errors import BadQuery, RecordDown
from relay.history.pg import SCHEMA
from relay.history.pg.connect import connect, reason
from relay.history.pg.reader import where_of
from relay.history.search import Query
from relay.logs import printable
from relay.settings import Settings
from relay.ui.api import query_of

BATCH = 2000  # rows fetched from the server at a time
COLUMNS = (  # (as exported, column of pd_relay.events): names as the API says them
    ("id", "id"), ("accepted_at", "accepted_at"), ("dedup_key", "dedup_key"),
    ("action", "action"), ("kind", "kind"), ("state", "state"), ("severity", "severity"),
    ("summary", "summary"), ("payload_source", "source"), ("component", "component"),
    ("class", "class"), ("group", "event_group"), ("source", "sender"), ("route", "route"),
    ("key", "key_name"), ("adapter", "adapter"), ("client", "client"), ("node", "node"),
    ("held", "held"), ("updated_at", "updated_at"))
STEPS = (f"(SELECT coalesce(json_agg(json_build_object('step', s.step, 'at', s.at, 'key', "
         f"s.key_name, 'detail', s.detail) ORDER BY s.at, s.entry, s.n), '[]') FROM "
         f"{SCHEMA}.steps AS s WHERE s.event_id = e.id AND s.at >= e.accepted_at)")
FILTERS = ("dedup_key", "source", "route", "state", "key", "severity", "q", "payload_source",
           "since", "until")
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def add_parser(actions: Any) -> None:
    """``export`` in the ``history`` command group."""
    export = actions.add_parser(
        "export", help="the record's events (PostgreSQL) as CSV or JSON lines, for auditors")
    export.add_argument("--since", help="accepted at or after: an age (7d, 12h) or a time "
                        "(ISO 8601); default: all the record keeps")
    export.add_argument("--until", help="accepted before: an age or a time")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", "-o", help="a file (made private; default: stdout)")
    for name in FILTERS[:-2]:
        export.add_argument(f"--{name.replace('_', '-')}", dest=name,
                            help="q: text in the summary, any case" if name == "q" else None)


def command(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.history_dsn:
        print("pd-relay history export reads the record in PostgreSQL: set "
              "RELAY_HISTORY_DSN", file=sys.stderr)
        return 2
    try:
        query = replace(query_of({k: str(v) for k in FILTERS
                                  if (v := getattr(args, k, None))}), limit=0)
    except BadQuery as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 2
    out: IO[str] = _private(args.output) if args.output else sys.stdout
    done = [0]  # events written so far

    def counted(found: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in found:
            yield row
            done[0] += 1

    try:
        with connect(settings.history_dsn, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")  # the steps' times, in their JSON
            written = write(counted(rows(conn, query, with_steps=args.format == "jsonl")),
                            out, args.format)
    except RecordDown as exc:
        print(printable(str(exc), 500), file=sys.stderr)
        return 1
    except psycopg.Error as exc:  # gone mid-export (a restart, a statement timeout)
        print(printable(f"{reason(exc, settings.history_dsn)}: the export stopped after "
                        f"{done[0]} event(s); run it again", 500), file=sys.stderr)
        return 1
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{written} event(s) exported", file=sys.stderr)
    return 0


def rows(conn: Any, query: Query, with_steps: bool = False) -> Iterator[dict[str, Any]]:
    """The events ``query`` asks for, oldest first, through a server-side cursor."""
    where, args = where_of(query)
    if query.state is not None:
        where.append("state = %s")
        args.append(query.state)
    columns = [f"e.{column} AS \"{name}\"" for name, column in COLUMNS]
    if with_steps:
        columns += ["e.payload AS payload", f"{STEPS} AS steps"]
    sql = (f"SELECT {', '.join(columns)} FROM {SCHEMA}.events AS e"
           f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY accepted_at, id")
    with conn.transaction(), conn.cursor(name="pd_relay_export") as cur:
        cur.itersize = BATCH
        cur.execute(sql.encode(), args)
        names = [d.name for d in cur.description or []]
        for row in cur:
            yield dict(zip(names, row, strict=True))


def write(found: Iterator[dict[str, Any]], out: IO[str], form: str) -> int:
    count = 0
    table = csv.writer(out) if form == "csv" else None
    if table is not None:
        table.writerow([name for name, _ in COLUMNS])
    for row in found:
        if table is not None:
            table.writerow([_cell(row[name]) for name, _ in COLUMNS])
        else:
            out.write(json.dumps({k: _value(v) for k, v in row.items()}, ensure_ascii=False,
                                 separators=(",", ":")) + "\n")
        count += 1
    return count


def _cell(value: Any) -> str:
    text = _value(value)
    text = "" if text is None else str(text)
    return "'" + text if text.startswith(FORMULA) else text


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def _private(path: str) -> IO[str]:
    """``path`` opened for writing, readable by its owner only (events' payloads)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file there before keeps its mode through os.open's
    return os.fdopen(fd, "w", encoding="utf-8", newline="")
