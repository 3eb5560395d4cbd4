"""The record's rows for the readers' tests: migration 1 applied by hand and steps written
with plain INSERTs into its schema (what an exporter writes: an event's row from its
accepted step and payload, a row per step, its state from all its steps)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg

from relay.history.entries import Step, steps_of
from relay.history.story import Story, key_name


def migrated(dsn: str) -> None:
    """Migration 1 applied, as ``pd-relay history migrate`` does."""
    sql = resources.files("relay.history.pg").joinpath("migrations/0001_record.sql").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS pd_relay")
        conn.execute(sql.encode())


def partition(conn: psycopg.Connection[Any], ms: int) -> None:
    day = datetime.fromtimestamp(ms / 1000, UTC).replace(hour=0, minute=0, second=0,
                                                         microsecond=0)
    for table in ("events", "steps"):
        conn.execute(f"CREATE TABLE IF NOT EXISTS pd_relay.{table}_{day:%Y%m%d} PARTITION OF "
                     f"pd_relay.{table} FOR VALUES FROM ('{day.isoformat()}') TO "
                     f"('{(day + timedelta(days=1)).isoformat()}')".encode())


def entries_of(client: Any, stream: str, ids: list[str] | None = None) -> list[Step]:
    """The steps in the stream's entries (only ``ids`` when given)."""
    found = []
    for entry_id, fields in client.xrange(stream):
        if ids is None or entry_id in ids:
            found += steps_of(entry_id, dict(fields))
    return found


def write(dsn: str, steps: list[Step], key_names: tuple[str, ...] = ()) -> None:
    """Write ``steps`` (ON CONFLICT DO NOTHING) and bring their events up to date."""
    with psycopg.connect(dsn) as conn:
        for step in steps:
            partition(conn, step.at_ms)
            detail = {k: v for k, v in step.fields.items() if k != "p"}
            conn.execute(
                "INSERT INTO pd_relay.steps (entry, n, at, event_id, dedup_key, step, slot, "
                "key_name, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [step.entry, step.n, _at(step.at_ms), step.event_id, step.dedup_key, step.step,
                 step.slot, key_name(key_names, step.slot), json.dumps(detail)])
            if step.step == "accepted":
                _event(conn, step, key_names)
        for event_id in {s.event_id for s in steps}:
            rows = conn.execute("SELECT entry, n, step, slot, detail FROM pd_relay.steps "
                                "WHERE event_id = %s", [event_id]).fetchall()
            ordered = sorted(rows, key=lambda r: (*map(int, r[0].split("-")), r[1]))
            story = Story(event_id, "", [{**r[4], "step": r[2], "slot": r[3]} for r in ordered])
            conn.execute("UPDATE pd_relay.events SET state = %s, updated_at = %s "
                         "WHERE id = %s", [story.state, _at(int(ordered[-1][0].split("-")[0])),
                                           event_id])


def _event(conn: psycopg.Connection[Any], step: Step, key_names: tuple[str, ...]) -> None:
    stored = step.payload or {}
    event = stored.get("e") or {}
    payload = event.get("payload") or {}
    f = step.fields
    conn.execute(
        "INSERT INTO pd_relay.events (id, accepted_at, entry, dedup_key, action, kind, "
        "severity, summary, source, component, class, event_group, route, sender, adapter, "
        "key_name, slot, client, node, held, state, updated_at, payload) VALUES (%s, %s, %s, "
        "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued', %s, %s)"
        " ON CONFLICT DO NOTHING",
        [step.event_id, _at(step.at_ms), step.entry, step.dedup_key, f.get("a"),
         stored.get("k"), payload.get("severity"), payload.get("summary"),
         payload.get("source"), payload.get("component"), payload.get("class"),
         payload.get("group"), f.get("r"), f.get("s"), f.get("ad"),
         key_name(key_names, step.slot), step.slot, f.get("c"), f.get("n"), f.get("h"),
         _at(step.at_ms), json.dumps(stored) if stored else None])


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
