"""The dead-letter store: events PagerDuty rejected for good, kept for a human.

Each dead letter holds the stored event, PagerDuty's reply, the reason and the time.
Replaying one puts the event back at the tail of its key's queue; purging drops it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from relay.keys import key_id
from relay.names import Names
from relay.scripts import Scripts
from relay.store import Record


class DeadLetters:
    def __init__(self, client: redis.Redis, names: Names, keys: Sequence[str]) -> None:
        self.client = client
        self.names = names
        self.known = {key_id(key) for key in keys}
        self.scripts = Scripts(client)

    def ids(self, limit: int = 0) -> list[str]:
        """Dead-letter ids, oldest first (all when ``limit`` is 0, else the newest ones)."""
        start = -limit if limit > 0 else 0
        return [str(i) for i in self.client.zrange(self.names.dead_index, start, -1)]

    def list(self, limit: int = 0) -> list[dict[str, Any]]:
        """Summaries: id, time, key (masked), reason, and what the event was."""
        ids = self.ids(limit)
        records = self.client.hmget(self.names.dead, ids) if ids else []
        return [_summary(json.loads(raw)) for raw in records if raw is not None]

    def get(self, dead_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.names.dead, dead_id)
        if raw is None:
            return None
        letter: dict[str, Any] = json.loads(str(raw))
        try:
            letter["event"] = Record.decode(letter["raw"]).event
        except (ValueError, KeyError, TypeError, RecursionError):
            letter["event"] = None
        return letter

    def replay(self, dead_id: str) -> str:
        """Queue the event again; return what happened ("replayed", "missing", ...)."""
        letter = self.get(dead_id)
        if letter is None:
            return "missing"
        if letter["key_id"] not in self.known:
            return "key no longer configured"
        return "replayed" if self._drop(letter, letter["raw"]) else "missing"

    def purge(self, dead_id: str) -> str:
        letter = self.get(dead_id)
        if letter is None:
            return "missing"
        return "purged" if self._drop(letter, "") else "missing"

    def _drop(self, letter: dict[str, Any], raw: str) -> bool:
        kid = letter["key_id"]
        done = self.scripts.drop_dead(
            keys=[
                self.names.dead, self.names.dead_index,
                self.names.stats(kid), self.names.queue(kid), self.names.queued_bytes,
            ],
            args=[letter["id"], raw],
        )
        return bool(done)


def shown(letter: dict[str, Any]) -> str:
    """The event, indented for a person; as stored when it cannot be (an event stored by
    an older version may nest deeper than any encoder goes: no recursion error here)."""
    if letter.get("event") is not None:
        try:
            return json.dumps(letter["event"], indent=2, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            pass
    raw = letter.get("raw")
    return raw if isinstance(raw, str) and raw else "unreadable"


def _summary(letter: dict[str, Any]) -> dict[str, Any]:
    try:
        record = Record.decode(letter["raw"])
        event = record.event
        what = f"{record.kind} {event.get('event_action', '')} {event.get('dedup_key', '')}"
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        what = "unreadable event"
    return {
        "id": letter["id"],
        "failed_at": letter["failed_at"],
        "routing_key": letter["routing_key"],
        "status": letter["status"],
        "reason": letter["reason"],
        "event": " ".join(what.split()),
    }
