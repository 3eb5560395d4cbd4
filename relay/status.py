"""Status: each routing key's queue, delivery counters and workers, read from Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from relay.keys import key_id, mask
from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings

COUNTERS = ("accepted", "delivered", "retried", "throttled", "dead", "dead_letters")
SUMMED = ("queued", "in_flight", "delivered_last_min", *COUNTERS)
COLUMNS = (
    ("routing_key", "KEY"),
    ("queued", "QUEUED"),
    ("oldest_age_seconds", "OLDEST(s)"),
    ("in_flight", "IN FLIGHT"),
    ("delivered", "DELIVERED"),
    ("delivered_last_min", "LAST MIN"),
    ("retried", "RETRIED"),
    ("throttled", "429s"),
    ("rate_limit", "LIMIT"),
    ("dead_letters", "DEAD"),
    ("workers", "WORKERS"),
    ("last_error", "LAST ERROR"),
)


def read_status(client: redis.Redis, names: Names, settings: Settings) -> list[dict[str, Any]]:
    """One row per configured key, read in one round trip. ``rate_limit`` is the key's
    send limit per window now: below the configured one while PagerDuty throttles."""
    keys = settings.routing_keys
    now = int(time.time() * 1000)
    rate_limit = Scripts(client).rate_limit
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            kid = key_id(key)
            pipe.llen(names.queue(kid))
            pipe.llen(names.inflight(kid))
            pipe.lindex(names.queue(kid), 0)
            pipe.hgetall(names.stats(kid))
            pipe.zcount(names.workers(kid), now, "+inf")  # heartbeats not yet lapsed
            pipe.zcount(names.recent(kid), now - 60_000, "+inf")
            rate_limit(keys=[names.window(kid), names.throttle(kid)],
                       args=[settings.rate_per_min, settings.rate_window_ms], client=pipe)
        replies = pipe.execute()
    rows = []
    for index, key in enumerate(keys):
        reply = replies[index * 7 : index * 7 + 7]
        queued, in_flight, oldest, stats, workers, recent, limit = reply
        age = max(0.0, (now - json.loads(oldest)["t"]) / 1000) if oldest else 0.0
        row: dict[str, Any] = {
            "routing_key": mask(key),
            "queued": queued,
            "oldest_age_seconds": round(age, 1),
            "in_flight": in_flight,
            "workers": workers,
            "worker_alive": workers > 0,
            "delivered_last_min": recent,
            "rate_limit": int(limit),
        }
        row.update({name: int(stats.get(name, 0)) for name in COUNTERS})
        row["last_error"] = stats.get("last_error", "")
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    table = [[title for _, title in COLUMNS]]
    table += [[str(row[name]) for name, _ in COLUMNS] for row in rows]
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
