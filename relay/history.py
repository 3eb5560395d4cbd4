"""Each event's story: accepted (when, on which node, from which source, by which route,
to which key), each attempt to send it (outcome, PagerDuty's status and the start of its
reply, the wait before the next), and its end (delivered, dead-lettered).

One Redis stream (``Names.history``) holds every step as ``{s: step, k: slot, x: JSON}``;
the JSON always carries the event's id (``i``) and dedup_key (``d``). ENQUEUE adds the
"accepted" steps of all the events it stores in one entry ``{s: accepted, v}``: for each
event its slot and the values of ``ACCEPTED`` joined by US (0x1f), the events joined by
RS (0x1e). One XADD per call rather than per event, and no field names repeated. The
worker adds the other steps.
The stream is capped (``RELAY_HISTORY_MAX_ENTRIES``, approximately: ``MAXLEN ~``) and
trimmed to ``RELAY_HISTORY_DAYS`` by the housekeeping.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis

from relay.names import Names

log = logging.getLogger(__name__)
CHUNK = 1000


def event_id() -> str:
    """A random 64-bit id in hex: an event's name in its story and its channels' jobs
    (``random`` is seeded from os.urandom per process; see router.mint_id)."""
    return f"{random.getrandbits(64):016x}"


ACCEPTED = ("i", "d", "a", "r", "s", "n", "ad", "c")  # id, dedup_key, action, route, source,
# node, adapter, client
US, RS = "\x1f", "\x1e"


def accepted(**fields: Any) -> bytes:
    """An accepted step's ``v``: the values of ``ACCEPTED``, in order."""
    return US.join(str(fields.get(name, "")).replace(US, " ").replace(RS, " ")
                   for name in ACCEPTED).encode()


def line(**fields: Any) -> bytes:
    """A step's JSON, compact."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Story:
    id: str
    dedup_key: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def end(self) -> str:
        """delivered, dead, held..., or "" while under way."""
        for step in reversed(self.steps):
            if step["step"] in ("delivered", "dead"):
                return str(step["step"])
        first = self.steps[0] if self.steps else {}
        if first.get("step") == "accepted" and not first.get("slot"):
            return "held"
        return ""


class History:
    def __init__(self, client: redis.Redis, names: Names, max_entries: int) -> None:
        self.client = client
        self.name = names.history
        self.max_entries = max_entries

    def note(self, step: str, slot: int, **fields: Any) -> None:
        """Add a step (``fields`` must hold the event's ``i`` and ``d``)."""
        if self.max_entries <= 0:
            return
        self.client.xadd(self.name, {"s": step, "k": slot, "x": line(**fields)},
                         maxlen=self.max_entries, approximate=True)

    def trace(self, dedup_key: str) -> list[Story]:
        """Every kept story of the events of ``dedup_key``, oldest first."""
        found: dict[str, Story] = {}
        steps: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        last = "+"
        while True:
            chunk: list[Any] = list(self.client.xrevrange(self.name, max=last, min="-",
                                                          count=CHUNK) or [])
            for entry_id, fields in chunk:
                for data in _steps(fields, dedup_key):
                    event_id = str(data.get("i", ""))
                    found.setdefault(event_id, Story(event_id, dedup_key))
                    data.update(step=fields.get("s", ""), at_ms=int(str(entry_id).split("-")[0]))
                    steps[event_id].append((str(entry_id), data))
            if len(chunk) < CHUNK:
                break
            last = "(" + str(chunk[-1][0])
        for event_id, story in found.items():
            story.steps = [data for _, data in sorted(steps[event_id], key=_order)]
        return sorted(found.values(), key=lambda s: s.steps[0]["at_ms"] if s.steps else 0)

    def trim(self, before_ms: int) -> int:
        """Forget the steps older than ``before_ms``; return how many went."""
        return int(self.client.xtrim(self.name, minid=before_ms, approximate=False))


def _steps(fields: dict[str, str], dedup_key: str) -> list[dict[str, Any]]:
    """The steps of one entry that are of ``dedup_key`` (an accepted entry holds many)."""
    found = []
    try:
        if "v" not in fields:
            data = json.loads(fields["x"])
            data["slot"] = int(fields.get("k", 0) or 0)
            return [data] if data.get("d") == dedup_key else []
        for part in fields["v"].split(RS):
            slot, _, values = part.partition(US)
            data = dict(zip(ACCEPTED, values.split(US), strict=True))
            if data.get("d") == dedup_key:
                found.append(dict(data, slot=int(slot)))
    except (KeyError, ValueError):
        return []
    return found


def _order(item: tuple[str, dict[str, Any]]) -> tuple[int, int]:
    ms, _, seq = item[0].partition("-")
    return int(ms), int(seq or 0)
