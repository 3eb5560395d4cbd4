"""Writing steps (``relay.history.entries.Step``) to the record: each batch in one
transaction, idempotently, so a batch written again (an exporter killed after its commit,
before its acknowledgement; two exporters given the same entries) writes nothing twice.

- ``pd_relay.steps``: one row per step, keyed by its entry and place (``ON CONFLICT DO
  NOTHING``);
- ``pd_relay.events``: one row per accepted step (its payload's columns), keyed by the
  event's id and accepted time;
- each event's ``state`` and ``updated_at`` are then computed again from all its stored
  steps, as ``relay.history.story.Story.state`` says, under advisory locks (one per
  bucket of event ids, ``LOCK_BUCKETS``) taken in one order: of two exporters committing
  steps of the same event in any order, the second computes after the first committed,
  and so sees all of them.
- that look-up reads only the partitions of the batch's days (``WINDOW_MS``): an event's
  accepted step is never after its other steps (stream ids only grow), and nearly always
  less than a day before them, so its row is looked for from a day before the batch's
  first step to its last, and its steps from that day on. The events not found there
  (retried for days; or not in the record yet: their accepted step in another exporter's
  batch, or lost) are looked up in every partition, as before.

The connection must be in autocommit (each batch is its own ``transaction()`` block).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from relay.history.entries import Step
from relay.history.pg import SCHEMA
from relay.history.pg.partitions import Partitions, day_of
from relay.history.story import ENDS, key_name

EVENT_COLUMNS = ("id", "accepted_at", "entry", "dedup_key", "action", "kind", "severity",
                 "summary", "source", "component", "class", "event_group", "route", "sender",
                 "adapter", "key_name", "slot", "client", "node", "held", "state",
                 "updated_at", "payload")
EVENT_TYPES = ("text", "timestamptz", *["text"] * 14, "integer", "text", "text", "text",
               "text", "timestamptz", "jsonb")
STEP_COLUMNS = ("entry", "n", "at", "event_id", "dedup_key", "step", "slot", "key_name",
                "detail")
STEP_TYPES = ("text", "integer", "timestamptz", "text", "text", "text", "integer", "text",
              "jsonb")
LOCK_SEED = 0x7064  # hashtextextended's seed for the per-event locks
LOCK_BUCKETS = 256  # the events' locks: one per bucket of their ids' hashes, so that a
# batch of 50,000 events takes at most 256 (each lock is a slot of PostgreSQL's shared
# lock table: max_locks_per_transaction x max_connections, 6,400 by default; one lock an
# event ran out of it, "out of shared memory"). Two events in one bucket wait for each
# other, which is all the locks must ensure (one order: no deadlock).
WINDOW_MS = 86_400_000  # how long before a batch's first step its events' accepted steps
# are looked for first (the partitions read: that day's and the batch's)
INDEXED_CHARS = 512  # the most of a btree-indexed column kept: PostgreSQL refuses an index
# row over 2704 bytes (ProgramLimitExceeded), and payload.source has no length limit; the
# payload column keeps the whole value


@dataclass(frozen=True)
class Written:
    events: int  # rows added to pd_relay.events
    steps: int  # rows added to pd_relay.steps


def write(conn: psycopg.Connection, steps: Sequence[Step], key_names: tuple[str, ...],
          partitions: Partitions) -> Written:
    """Write ``steps`` (and their events) in one transaction, committed on return."""
    if not steps:
        return Written(0, 0)
    if not conn.autocommit:
        raise ValueError("the record's writer needs a connection in autocommit")
    partitions.ensure(conn, {day_of(step.at_ms) for step in steps})
    events = sorted((event_row(step, key_names) for step in steps if step.step == "accepted"),
                    key=lambda row: (row[0], row[1]))
    rows = sorted((step_row(step, key_names) for step in steps),
                  key=lambda row: (row[0], row[1]))
    ids = sorted({step.event_id for step in steps})
    with conn.transaction(), conn.cursor() as cur:
        added_events = _insert(cur, "events", EVENT_COLUMNS, EVENT_TYPES, events,
                               "(id, accepted_at)")
        added_steps = _insert(cur, "steps", STEP_COLUMNS, STEP_TYPES, rows, "(entry, n, at)")
        cur.execute("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT "
                    "hashtextextended(i, %s) & %s AS k FROM unnest(%s::text[]) AS i "
                    "ORDER BY k) AS locks", (LOCK_SEED, LOCK_BUCKETS - 1, ids))
        low = _time(min(step.at_ms for step in steps) - WINDOW_MS)
        high = _time(max(step.at_ms for step in steps))
        cur.execute(RECOMPUTE_WITHIN, {"ids": ids, "ends": list(ENDS), "low": low,
                                       "high": high})
        missing = sorted(set(ids) - {row[0] for row in cur.fetchall()})
        if missing:  # accepted before the window, or not in the record (yet)
            cur.execute(RECOMPUTE_ALL, {"ids": missing, "ends": list(ENDS)})
    return Written(added_events, added_steps)


def _insert(cur: psycopg.Cursor, table: str, columns: tuple[str, ...],
            types: tuple[str, ...], rows: list[tuple[Any, ...]], key: str) -> int:
    """All ``rows`` in one statement: a column each as an array (``unnest``), jsonb given
    as text."""
    if not rows:
        return 0
    arrays = ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for kind in types)
    chosen = ", ".join(f"{name}::jsonb" if kind == "jsonb" else name
                       for name, kind in zip(columns, types, strict=True))
    names = ", ".join(columns)
    cur.execute(f"INSERT INTO {SCHEMA}.{table} ({names}) SELECT {chosen} FROM "
                f"unnest({arrays}) AS u({names}) ON CONFLICT {key} DO NOTHING",
                [list(column) for column in zip(*rows, strict=True)])
    return max(0, cur.rowcount)


# Each event's state from all its stored steps, in the story's order (time, then the
# accepted step before others of its millisecond, then the entry's sequence and place):
# its last end (delivered, dead, coalesced); else how its first step, an accepted one
# without a slot, was held; else retrying after an attempt; else queued.
# RECOMPUTE_WITHIN: only the events accepted from ``low`` to ``high`` and their steps
# from ``low`` on (the partitions of those days: PostgreSQL prunes the others).
RECOMPUTE = f"""
WITH ordered AS (
  SELECT event_id, step, slot, detail, at, n,
         CASE WHEN step = 'accepted' THEN -1
              ELSE split_part(entry, '-', 2)::numeric END AS seq
  FROM {SCHEMA}.steps WHERE event_id = ANY(%(ids)s){{steps}}
), story AS (
  SELECT event_id, max(at) AS updated_at,
         (array_agg(step ORDER BY at DESC, seq DESC, n DESC)
            FILTER (WHERE step = ANY(%(ends)s)))[1] AS ended,
         (array_agg(CASE WHEN step = 'accepted' AND coalesce(slot, 0) = 0
                         THEN coalesce(nullif(detail->>'h', ''), 'held') ELSE '' END
                    ORDER BY at, seq, n))[1] AS held,
         bool_or(step = 'attempt') AS tried
  FROM ordered GROUP BY event_id
)
UPDATE {SCHEMA}.events AS e
SET state = coalesce(story.ended, nullif(story.held, ''),
                     CASE WHEN story.tried THEN 'retrying' ELSE 'queued' END),
    updated_at = greatest(story.updated_at, e.accepted_at)
FROM story WHERE e.id = story.event_id{{events}}
"""
RECOMPUTE_ALL = RECOMPUTE.format(steps="", events="")
RECOMPUTE_WITHIN = RECOMPUTE.format(
    steps=" AND at >= %(low)s",
    events=" AND e.accepted_at BETWEEN %(low)s AND %(high)s RETURNING e.id")


def event_row(step: Step, key_names: tuple[str, ...]) -> tuple[Any, ...]:
    """An accepted step's ``pd_relay.events`` row (its payload's columns when it carries
    the event as stored)."""
    stored = step.payload or {}
    event: dict[str, Any] = stored["e"] if isinstance(stored.get("e"), dict) else {}
    body: dict[str, Any] = event["payload"] if isinstance(event.get("payload"), dict) else {}
    fields = step.fields
    at = _time(step.at_ms)
    return (_short(_clean(step.event_id)), at, step.entry, _short(_clean(step.dedup_key)),
            _text(fields.get("a") or event.get("event_action")), _text(stored.get("k")),
            _short(_text(body.get("severity"))), _text(body.get("summary")),
            _short(_text(body.get("source"))), _text(body.get("component")),
            _text(body.get("class")), _text(body.get("group")), _short(_text(fields.get("r"))),
            _short(_text(fields.get("s"))), str(fields.get("ad") or ""),
            _short(key_name(key_names, step.slot)), step.slot,
            _text(fields.get("c")),
            _text(fields.get("n")), str(fields.get("h") or ""), "queued", at,
            _json(stored) if stored else None)


def step_row(step: Step, key_names: tuple[str, ...]) -> tuple[Any, ...]:
    detail = {name: value for name, value in step.fields.items()
              if not (name == "p" and step.step == "accepted")}
    named = key_name(key_names, step.slot) or _text(step.fields.get("k"))  # a worker's step
    # names its key itself (its label: a name or a mask, never the key)
    return (step.entry, step.n, _time(step.at_ms), _short(_clean(step.event_id)),
            _short(_clean(step.dedup_key)), _clean(step.step),
            step.slot, named, _json(detail))


def _json(value: Any) -> str:
    """``value`` as JSON text for a jsonb column (without NUL characters)."""
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(_clean(value), separators=(",", ":"), ensure_ascii=False) \
        if "\\u0000" in raw else raw


def _clean(value: Any) -> Any:
    """``value`` without NUL characters, which PostgreSQL's text and jsonb refuse."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _short(value: Any) -> Any:
    """A btree-indexed column's text: at most ``INDEXED_CHARS``."""
    return value[:INDEXED_CHARS] if isinstance(value, str) else value


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(_clean(value if isinstance(value, str) else str(value)))
