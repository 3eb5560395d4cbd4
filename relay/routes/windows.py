"""Maintenance windows added at run time (``pd-relay maintenance add|list|expire``), kept
in Redis as Alertmanager keeps silences, beside those of the routes file.

Each ingress node reads them every ``REFRESH_S`` seconds in the background (a window
takes effect within that), so no request waits on Redis for them. An expired window is
kept for a day, for ``list``, then dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from relay.routes.config import Window
from relay.routes.matchers import parse

log = logging.getLogger(__name__)
REFRESH_S = 2.0
KEEP_EXPIRED_S = 86_400


class Windows:
    def __init__(self, client: redis.Redis, hash_name: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.hash_name = hash_name
        self.clock = clock

    def add(self, name: str, matchers: list[str], start: float, end: float,
            comment: str = "") -> str:
        """Store a window; ValueError for a bad matcher or an end not after its start."""
        for text in matchers:
            parse(text)
        if end <= start:
            raise ValueError("the end must be after the start")
        window_id = uuid.uuid4().hex[:12]
        self.client.hset(self.hash_name, window_id, json.dumps({
            "id": window_id, "name": name, "match": matchers, "start": start, "end": end,
            "comment": comment, "created": self.clock()}))
        return window_id

    def all(self) -> list[dict[str, Any]]:
        """Every stored window, oldest first; those expired over a day ago are dropped."""
        found = [json.loads(raw) for raw in self.client.hvals(self.hash_name)]
        old = [w["id"] for w in found if w["end"] < self.clock() - KEEP_EXPIRED_S]
        if old:
            self.client.hdel(self.hash_name, *old)
        return sorted((w for w in found if w["id"] not in old), key=lambda w: w["created"])

    def expire(self, window_id: str) -> bool:
        raw = self.client.hget(self.hash_name, window_id)
        if raw is None:
            return False
        window, now = json.loads(raw), self.clock()
        if now < window["end"]:  # its notice says "expired early" (relay.channels.maintenance)
            window.update(expired=now, planned_end=window["end"], end=now)
        self.client.hset(self.hash_name, window_id, json.dumps(window))
        return True

    def active(self) -> tuple[Window, ...]:
        """The windows not yet over, for the router."""
        now = self.clock()
        return tuple(Window(f"{w['name']}", tuple(parse(m) for m in w["match"]), w["start"],
                            w["end"], w["id"]) for w in self.all() if w["end"] > now)


def follow(windows: Windows, apply: Callable[[tuple[Window, ...]], None],
           stop: threading.Event) -> threading.Thread:
    """Read the windows every REFRESH_S seconds and ``apply`` them when they change."""

    def run() -> None:
        seen: tuple[Window, ...] | None = None
        while True:
            try:
                current = windows.active()
                if current != seen:
                    apply(current)
                    seen = current
            except (redis.RedisError, ValueError, KeyError) as exc:
                log.debug("maintenance windows not read: %s", type(exc).__name__)
            if stop.wait(REFRESH_S):
                return

    thread = threading.Thread(target=run, name="maintenance", daemon=True)
    thread.start()
    return thread


def when(text: str, now: float) -> float:
    """A time for the command line: ISO 8601 (UTC when no zone), ``now``, or a duration
    from now such as ``30m``, ``2h``, ``1d``."""
    if text == "now":
        return now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return now + float(text[:-1]) * units[text[-1]]
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
