"""A realistic record for the history's benchmarks: ``count`` events (and their steps) put
straight into PostgreSQL's real schema (``relay/history/pg/migrations``) by one
``INSERT ... SELECT generate_series`` per day partition, spread over ``days`` days, then
the query timings the issue's goals name (``scripts/bench --only history``).

The shape follows what a relay sees: some 40,000 incidents, each a trigger then (mostly)
its resolve and repeats, on 2,000 hosts (payload.source), from 20 senders (API keys),
by 20 routes to 10 keys; severity mostly warning and error; nearly every story
delivered, a few dead or retrying. Each event has its accepted step, an attempt and its
end (3 steps). Days are busier in working hours, as monitoring is.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from relay.history.pg import SCHEMA
from relay.history.pg import migrate as runner

INCIDENTS, HOSTS, SENDERS, ROUTES, KEYS = 40_000, 2_000, 20, 20, 10
SEVERITIES = ("critical", "error", "warning", "info")


def migrate(conn: psycopg.Connection[Any]) -> None:
    """The schema, as ``pd-relay history migrate`` leaves it (its runner)."""
    runner.migrate(conn)
    conn.commit()


def partition(conn: psycopg.Connection[Any], day: datetime) -> None:
    """The day's partitions of events and steps (``events_YYYYMMDD``, from 00:00 UTC),
    named as the exporter names them."""
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    for table in ("events", "steps"):
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table}_{start:%Y%m%d} "
                     f"PARTITION OF {SCHEMA}.{table} FOR VALUES FROM ('{start.isoformat()}')"
                     f" TO ('{end.isoformat()}')")


# One day's events: row n (from `first`) at a time in the day weighted to working hours,
# its incident from n (a trigger, then resolves and repeats of the same dedup_key).
EVENTS = f"""
INSERT INTO {SCHEMA}.events (id, accepted_at, entry, dedup_key, action, kind, severity,
    summary, source, component, class, event_group, route, sender, adapter, key_name,
    slot, client, node, held, state, updated_at, payload)
SELECT e.id, e.at, (extract(epoch FROM e.at) * 1000)::bigint || '-' || e.n, e.dedup_key,
       e.action, 'alert', e.severity, e.summary,
       e.host, e.component, e.component || '-alert', 'tier-' || (e.h %% 12), e.route,
       e.sender, CASE WHEN e.h %% 3 = 0 THEN 'alertmanager' ELSE '' END, e.key_name,
       1 + e.h %% {KEYS}, '10.0.' || (e.h %% 200) || '.' || (e.h %% 250), 'node-' || (e.h %% 2),
       '', e.state, e.at + interval '300 milliseconds',
       jsonb_build_object('event_action', e.action, 'dedup_key', e.dedup_key,
           'payload', jsonb_build_object('summary', e.summary, 'source', e.host,
               'severity', e.severity, 'component', e.component))
FROM (
  SELECT substr(md5('ev' || n), 1, 16) AS id,
         %(day)s::timestamptz + make_interval(secs => (86400 *
             (CASE WHEN n %% 3 = 0 THEN (n * 0.6180339887) %% 1
                   ELSE 0.33 + ((n * 0.7548776662) %% 1) * 0.42 END))::float8) AS at,
         n,
         'inc-' || lpad(to_hex(i), 8, '0') AS dedup_key,
         i, abs(hashtext('h' || i)) AS h,
         CASE WHEN n %% 4 = 3 THEN 'resolve' ELSE 'trigger' END AS action,
         (ARRAY['critical','error','warning','warning','error','info'])[1 + i %% 6] AS severity,
         (ARRAY['CPU load above 95%% on ','disk almost full on ','HTTP 5xx rate high on ',
                'replication lag on ','memory pressure on ','certificate expires soon on '])
             [1 + i %% 6] || 'host-' || lpad((i %% {HOSTS})::text, 4, '0') AS summary,
         'host-' || lpad((i %% {HOSTS})::text, 4, '0') || '.example.com' AS host,
         (ARRAY['cpu','disk','http','db','memory','tls'])[1 + i %% 6] AS component,
         'route-' || (i %% {ROUTES}) AS route,
         'sender-' || (i %% {SENDERS}) AS sender,
         'key-' || (i %% {KEYS}) AS key_name,
         CASE WHEN n %% 997 = 0 THEN 'dead' WHEN n %% 1999 = 0 THEN 'retrying'
              ELSE 'delivered' END AS state
  FROM (SELECT n, (n * 7919) %% {INCIDENTS} AS i
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n) AS ns
) AS e
"""

# Each event's steps: accepted, attempt, and its end, 100 ms apart, each in a stream entry
# of its own ("<ms>-<seq>", as the exporter names them).
STEPS = f"""
INSERT INTO {SCHEMA}.steps (entry, n, at, event_id, dedup_key, step, slot, key_name, detail)
SELECT ((extract(epoch FROM e.accepted_at) * 1000)::bigint + 100 * s.k) || '-'
           || split_part(e.entry, '-', 2), 0,
       e.accepted_at + make_interval(secs => 0.1 * s.k), e.id, e.dedup_key,
       (ARRAY['accepted', 'attempt', CASE WHEN e.state = 'retrying' THEN 'attempt'
                                        ELSE e.state END])[1 + s.k],
       e.slot, e.key_name,
       CASE WHEN s.k = 0 THEN jsonb_build_object('a', e.action, 'r', e.route, 's', e.sender)
            ELSE jsonb_build_object('o', 'sent', 'st', 202) END
FROM {SCHEMA}.events_%(suffix)s AS e CROSS JOIN generate_series(0, 2) AS s(k)
"""


def generate(dsn: str, count: int, days: int = 90, now: datetime | None = None,
             say: Callable[[str], None] = print) -> float:
    """Put ``count`` events (3 steps each) into the database at ``dsn`` over the ``days``
    days before ``now``; return the seconds it took."""
    started = time.monotonic()
    today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day, extra = divmod(count, days)
    first = 0
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        migrate(conn)
        for back in range(days, 0, -1):
            day = today - timedelta(days=back - 1)
            size = per_day + (1 if back <= extra else 0)
            partition(conn, day)
            conn.execute(EVENTS, {"day": day, "first": first,
                                  "last": first + size - 1})
            conn.execute(STEPS.replace("%(suffix)s", f"{day:%Y%m%d}"))
            conn.commit()
            first += size
            if back % 15 == 0:
                say(f"  {first:,} events in {time.monotonic() - started:.0f} s")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.events")
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.steps")
    return time.monotonic() - started


def samples(conn: psycopg.Connection[Any], rounds: int, seed: int = 29) -> dict[str, list[Any]]:
    """Parameters for each query, drawn from stored events (so each one finds rows): their
    dedup_key, their sender and host over the day around them, a page after them."""
    rng = random.Random(seed)
    stored = conn.execute(f"SELECT dedup_key, sender, source, accepted_at, id FROM "
                          f"{SCHEMA}.events TABLESAMPLE SYSTEM (5) LIMIT 5000").fetchall()
    picks = [rng.choice(stored) for _ in range(rounds)]
    half = timedelta(hours=12)
    return {
        "dedup_key": [p[0] for p in picks],
        "sender": [(p[1], p[3] - half, p[3] + half) for p in picks],
        "source": [(p[2], p[3] - half, p[3] + half) for p in picks],
        "page": [None if n % 4 == 0 else (p[3], p[4])  # the first, or one further
                 for n, p in enumerate(picks)],
        "trace": [rng.choice(stored)[0] for _ in range(rounds)],
    }


def timings(conn: psycopg.Connection[Any], queries: dict[str, Callable[[Any], Any]],
            params: dict[str, list[Any]]) -> dict[str, dict[str, float]]:
    """Each query run once per parameter (interleaved, so drift hits all alike), timed on
    the client (the round trip included); p50 and p99 in ms, rows found on average."""
    found: dict[str, list[float]] = {name: [] for name in queries}
    rows: dict[str, list[int]] = {name: [] for name in queries}
    for n in range(len(next(iter(params.values())))):
        for name, query in queries.items():
            started = time.perf_counter()
            answer = query(params[name][n])
            found[name].append((time.perf_counter() - started) * 1000)
            rows[name].append(len(answer))
    return {name: {"p50": statistics.median(ms), "p99": _p99(ms),
                   "rows": statistics.mean(rows[name])} for name, ms in found.items()}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


LIST = (f"SELECT id, accepted_at, dedup_key, action, severity, summary, sender, route, "
        f"key_name, state FROM {SCHEMA}.events")


def queries(conn: psycopg.Connection[Any]) -> dict[str, Callable[[Any], list[Any]]]:
    """The searches the issue's goals name, as plain SQL on the record's indexes (a page
    is 50 events, newest first): by dedup_key; by sender (the API's ``source``: the relay
    source) over a day; by payload.source (the host) over a day; a page of the Events
    list (the first, or one further: keyset, after the previous page's last event); and
    an incident's trace (its events and their steps, in time order)."""
    def rows(sql: str, args: Any) -> list[Any]:
        return conn.execute(sql, args).fetchall()

    def page(after: Any) -> list[Any]:
        if after is None:  # the first page
            return rows(LIST + " ORDER BY accepted_at DESC, id DESC LIMIT 50", ())
        return rows(LIST + " WHERE (accepted_at, id) < (%s, %s) "
                    "ORDER BY accepted_at DESC, id DESC LIMIT 50", after)

    def trace(dedup_key: str) -> list[Any]:
        events = rows(LIST + " WHERE dedup_key = %s ORDER BY accepted_at LIMIT 500",
                      (dedup_key,))
        return events + rows(f"SELECT entry, n, at, event_id, step, detail FROM {SCHEMA}.steps"
                             " WHERE dedup_key = %s ORDER BY at, entry, n LIMIT 5000",
                             (dedup_key,))

    return {
        "dedup_key": lambda key: rows(LIST + " WHERE dedup_key = %s "
                                      "ORDER BY accepted_at DESC LIMIT 50", (key,)),
        "sender": lambda a: rows(LIST + " WHERE sender = %s AND accepted_at >= %s AND "
                                 "accepted_at < %s ORDER BY accepted_at DESC LIMIT 50", a),
        "source": lambda a: rows(LIST + " WHERE source = %s AND accepted_at >= %s AND "
                                 "accepted_at < %s ORDER BY accepted_at DESC LIMIT 50", a),
        "page": page,
        "trace": trace,
    }
