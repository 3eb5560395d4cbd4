"""Status: each routing key's queue, delivery counters and workers, read from Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from relay.keyring import known_keys
from relay.keys import key_id, mask
from relay.logs import printable
from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings
from relay.severity import LEVELS
from relay.store import Record, is_gap

HEADS = 64  # the first entries of a waiting list read for its oldest event (gaps skipped)
COUNTERS = ("accepted", "delivered", "retried", "throttled", "dead", "purged", "coalesced", "aged",
            "dead_letters")
SUMMED = ("queued", "in_flight", "open_incidents", "delivered_last_min", *COUNTERS)
COLUMNS = (
    ("routing_key", "KEY"),
    ("queued", "QUEUED"),
    ("queued_mb", "MB"),
    ("oldest_age_seconds", "OLDEST(s)"),
    ("by_severity", "C/E/W/I"),
    ("oldest_critical_age_seconds", "CRIT(s)"),
    ("in_flight", "IN FLIGHT"),
    ("open_incidents", "OPEN"),
    ("delivered", "DELIVERED"),
    ("delivered_last_min", "LAST MIN"),
    ("retried", "RETRIED"),
    ("throttled", "429s"),
    ("coalesced", "MERGED"),
    ("rate_limit", "LIMIT"),
    ("dead_letters", "DEAD"),
    ("workers", "WORKERS"),
    ("last_error", "LAST ERROR"),
)


def read_status(client: redis.Redis, names: Names, settings: Settings) -> list[dict[str, Any]]:
    """One row per configured key, then one per key removed from the keys file that the
    relay served before (``state`` says which: active, draining or removed), read in two
    round trips. ``rate_limit`` is the key's send limit per window now: below the
    configured one while PagerDuty throttles. ``queued_by_severity`` counts the events
    sorted into each lane (storm mode), ``unsorted`` those not yet sorted."""
    known = known_keys(client, names)
    entries = [
        (key_id(key), f"{settings.name_of(key)} {mask(key)}",
         "draining" if key in settings.draining_keys else "active")
        for key in settings.routing_keys
    ]
    configured = {kid for kid, _, _ in entries}
    entries += [(kid, label, "removed") for kid, label in known.items() if kid not in configured]
    now = int(time.time() * 1000)
    idle = now - int(settings.incident_ttl_s * 1000)  # incidents silent since: not open
    rate_limit = Scripts(client).rate_limit
    with client.pipeline(transaction=False) as pipe:
        for kid, _, _ in entries:
            for name in names.waiting(kid):
                pipe.llen(name)
                pipe.lrange(name, 0, HEADS - 1)  # its head, past any gaps there
            pipe.llen(names.inflight(kid))
            pipe.hgetall(names.stats(kid))
            pipe.zcount(names.workers(kid), now, "+inf")  # heartbeats not yet lapsed
            pipe.zcount(names.recent(kid), now - 60_000, "+inf")
            pipe.zcount(names.incidents(kid), idle, "+inf")  # (idle ones: swept later)
            rate_limit(keys=[names.window(kid), names.throttle(kid)],
                       args=[settings.rate_per_min, settings.rate_window_ms], client=pipe)
        replies = pipe.execute()
    rows = []
    lists = 2 * (len(LEVELS) + 1)  # each lane's and the arrival list's length and heads
    width = lists + 6
    for index, (_, label, state) in enumerate(entries):
        reply = replies[index * width: (index + 1) * width]
        lengths, heads = reply[0:lists:2], [_first_ms(head) for head in reply[1:lists:2]]
        in_flight, stats, workers, recent, incidents, limit = reply[lists:]
        waited = [now - head for head in heads if head is not None]
        age = max(0.0, max(waited) / 1000) if waited else 0.0
        critical = max(0.0, (now - heads[0]) / 1000) if heads[0] is not None else 0.0
        name, _, masked = label.rpartition(" ")
        row: dict[str, Any] = {
            "name": name or masked,
            "routing_key": masked,
            "key_id": entries[index][0],
            "state": state,
            "queued": max(0, lengths[-1] + int(stats.get("laned", 0))),  # (gaps: -1)
            "unsorted": lengths[-1],
            "queued_by_severity": dict(zip(LEVELS, lengths, strict=False)),
            "oldest_age_seconds": round(age, 1),
            "oldest_critical_age_seconds": round(critical, 1),
            "in_flight": in_flight,
            "open_incidents": incidents,
            "workers": workers,
            "worker_alive": workers > 0,
            "delivered_last_min": recent,
            "rate_limit": int(limit),
        }
        row.update({name: int(stats.get(name, 0)) for name in COUNTERS})
        row["by_severity"] = "/".join(str(n) for n in lengths[:-1])
        row["queued_bytes"] = max(0, int(stats.get("bytes", 0)))  # and in flight (the cap's)
        row["queued_mb"] = round(row["queued_bytes"] / 2**20, 1)
        row["last_error"] = stats.get("last_error", "")
        row["blocked"] = stats.get("blocked", "")
        row["key_blocked"] = int(bool(row["blocked"]))
        rows.append(row)
    return rows


def _first_ms(heads: list[str]) -> int | None:
    """When the first waiting event of a list (or the first of the repeats it stands for)
    was accepted, past gaps (relay/store.py) and unreadable events; None for none."""
    for raw in heads:
        try:
            record = Record.decode(raw) if raw and not is_gap(raw) else None
        except (ValueError, KeyError, TypeError):
            continue
        if record is not None:
            return record.first_ms or record.accepted_ms
    return None


SHED_KINDS = ("incidents", "held", "history", "notices")


def read_shed(client: redis.Redis, names: Names) -> dict[str, int]:
    """What the relay let go to keep room for pages, by kind (``Names.shed``): incidents
    remembered on keys and held ones past ``RELAY_INCIDENTS_MAX``, and when Redis was
    full, history entries and channel notices (relay/shed.py)."""
    found = client.hgetall(names.shed)
    return {kind: int(found.get(kind, 0)) for kind in SHED_KINDS}


def format_shed(shed: dict[str, int]) -> str:
    """One line for ``pd-relay status``; empty when nothing was shed."""
    if not any(shed.values()):
        return ""
    return "SHED to keep room for pages: " + ", ".join(
        f"{count} {kind}" for kind, count in shed.items() if count)


def open_alarms(client: redis.Redis, names: Names) -> dict[str, dict[str, Any]]:
    """The relay's open alarms (relay/housekeeping/selfcheck.py raises them): id to
    {key, since, summary}."""
    return {str(cid): json.loads(raw) for cid, raw in client.hgetall(names.alarms).items()}


def _cell(row: dict[str, Any], name: str) -> str:
    if name == "routing_key":
        shown = f"{row['name']} {row[name]}" if row["name"] != row[name] else row[name]
        return shown if row["state"] == "active" else f"{shown} ({row['state']})"
    if name == "last_error" and row.get("blocked"):
        return printable(f"BLOCKED {row['blocked']}", 200)
    return printable(row[name], 200)  # PagerDuty's words, a client's dedup_key: data


def format_table(rows: list[dict[str, Any]]) -> str:
    table = [[title for _, title in COLUMNS]]
    table += [[_cell(row, name) for name, _ in COLUMNS] for row in rows]
    totals = ["TOTAL"] + [
        str(sum(row[name] for row in rows)) if name in SUMMED else ""
        for name, _ in COLUMNS[1:]
    ]
    table.append(totals)
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def format_decisions(decisions: dict[str, list[dict[str, Any]]]) -> str:
    """The routes' and sources' counts (``relay.tally.read``), a small table each."""
    parts = []
    for kind, outcomes in (("routes", ("accepted", "dropped", "suppressed", "held")),
                           ("sources", ("accepted", "refused"))):
        rows = decisions.get(kind) or []
        if not rows:
            continue
        table = [[kind[:-1].upper()] + [o.upper() for o in outcomes]]
        table += [[row["name"]] + [str(row[o]) for o in outcomes] for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        parts.append("\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                               .rstrip() for line in table))
    return "\n\n".join(parts)
