"""Reading the history: the stories of the events a query asks for.

The stream is read newest first, in chunks. An event's steps arrive before its
"accepted" step (its first): they wait until it comes, and the story is then whole and
judged against the query (source, route and state are only known then). A search stops
at ``limit`` stories or at ``since``; a story whose accepted step is older than the
stream (trimmed) is kept only when the query cannot need it (no source, route or since).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from relay.history import ACCEPTED, RS, US
from relay.names import Names

CHUNK = 1000
ENDS = ("delivered", "dead")
READABLE = {  # a step's short field names, as the API and `trace --json` say them
    "a": "action", "r": "route", "s": "source", "n": "node", "ad": "adapter", "c": "client",
    "h": "held", "o": "outcome", "e": "error", "st": "status", "w": "next_in_s",
    "dl": "dead_letter", "k": "key",
}
STATES = ("queued", "retrying", "delivered", "dead", "dropped", "suppressed",
          "channels-only", "held")


@dataclass
class Story:
    id: str
    dedup_key: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def end(self) -> str:
        """delivered, dead, dropped, suppressed, channels-only, held, or "" while under
        way (held: an acknowledge or resolve held with its held-back trigger)."""
        for step in reversed(self.steps):
            if step["step"] in ENDS:
                return str(step["step"])
        first = self.steps[0] if self.steps else {}
        if first.get("step") == "accepted" and not first.get("slot"):
            return str(first.get("h") or "held")
        return ""

    @property
    def state(self) -> str:
        """The end, or queued (no attempt yet) or retrying while under way."""
        return self.end or ("retrying" if any(s["step"] == "attempt" for s in self.steps)
                            else "queued")

    @property
    def accepted(self) -> dict[str, Any]:
        first = self.steps[0] if self.steps else {}
        return first if first.get("step") == "accepted" else {}

    def as_json(self, key_names: tuple[str, ...]) -> dict[str, Any]:
        """The story as the API answers it: readable names, times in ISO 8601 UTC, the
        key by its name."""
        first = self.accepted
        steps = []
        for step in self.steps:
            shown: dict[str, Any] = {"step": step["step"], "at": iso(step["at_ms"])}
            for name, value in step.items():
                if name == "r" and step["step"] != "accepted":
                    shown["reply"] = value
                elif name in READABLE and value not in ("", None):
                    shown[READABLE[name]] = value
            if step["step"] == "accepted":
                shown["key"] = key_name(key_names, int(step.get("slot") or 0))
            steps.append(shown)
        return {"id": self.id, "dedup_key": self.dedup_key, "action": first.get("a"),
                "state": self.state, "accepted_at": steps[0]["at"] if first else None,
                "key": steps[0].get("key") if first else None, "route": first.get("r"),
                "source": first.get("s"), "steps": steps}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def key_name(key_names: tuple[str, ...], slot: int) -> str | None:
    """The name of the key in ``slot`` (None: held back, slot 0)."""
    if not slot:
        return None
    n = abs(slot)
    return key_names[n - 1] if n <= len(key_names) and key_names[n - 1] else f"key-{n}"


@dataclass(frozen=True)
class Query:
    dedup_key: str | None = None
    source: str | None = None
    route: str | None = None
    state: str | None = None  # one of STATES
    since_ms: int | None = None  # events accepted at or after
    event_id: str | None = None
    limit: int = 50  # 0: all

    def fits(self, story: Story) -> bool:
        first = story.accepted
        if not first and (self.source or self.route or self.since_ms):
            return False
        return ((self.source is None or first.get("s") == self.source)
                and (self.route is None or first.get("r") == self.route)
                and (self.state is None or story.state == self.state))


def search(client: redis.Redis, names: Names, query: Query) -> list[Story]:
    """The stories ``query`` asks for, newest first."""
    found: list[Story] = []
    waiting: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    last = "+"
    low = str(query.since_ms) if query.since_ms else "-"
    while True:
        chunk: list[Any] = list(client.xrevrange(names.history, max=last, min=low,
                                                 count=CHUNK) or [])
        for entry_id, fields in chunk:
            for data in _steps(fields, query):
                data.update(step=fields.get("s", ""), at_ms=int(str(entry_id).split("-")[0]))
                waiting[str(data.get("i", ""))].append((str(entry_id), data))
                if data["step"] == "accepted":
                    story = _story(waiting.pop(str(data.get("i", ""))))
                    if query.fits(story):
                        found.append(story)
                        if query.limit and len(found) >= query.limit:
                            return found
        if len(chunk) < CHUNK:
            break
        last = "(" + str(chunk[-1][0])
    rest = [_story(steps) for steps in waiting.values()]  # begun before the stream
    found += sorted((s for s in rest if query.fits(s)), key=lambda s: -s.steps[0]["at_ms"])
    return found[: query.limit] if query.limit else found


def _story(steps: list[tuple[str, dict[str, Any]]]) -> Story:
    ordered = [data for _, data in sorted(steps, key=_order)]
    return Story(str(ordered[0].get("i", "")), str(ordered[0].get("d", "")), ordered)


def _steps(fields: dict[str, str], query: Query) -> list[dict[str, Any]]:
    """The steps of one entry that ``query`` may want (an accepted entry holds many)."""
    found = []
    try:
        if "v" not in fields:
            data = json.loads(fields["x"])
            data["slot"] = int(fields.get("k", 0) or 0)
            return [data] if _wanted(data, query) else []
        for part in fields["v"].split(RS):
            slot, _, values = part.partition(US)
            data = dict(zip(ACCEPTED, values.split(US), strict=False))  # older: fewer
            if _wanted(data, query):
                found.append(dict(data, slot=int(slot)))
    except (KeyError, ValueError):
        return []
    return found


def _wanted(data: dict[str, Any], query: Query) -> bool:
    return ((query.dedup_key is None or data.get("d") == query.dedup_key)
            and (query.event_id is None or data.get("i") == query.event_id))


def _order(item: tuple[str, dict[str, Any]]) -> tuple[int, int]:
    ms, _, seq = item[0].partition("-")
    return int(ms), int(seq or 0)
