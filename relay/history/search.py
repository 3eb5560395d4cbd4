"""Reading the history: the stories of the events a query asks for.

The stream is read newest first, in chunks of plain XREVRANGE (a script that filtered in
Redis cost Redis 4.6 ms per 1,000 entries, blocking ingest: the filtering stays here,
on text before parsing). An event's steps arrive before its
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
    waiting: dict[str, list[tuple[str, str, int, str]]] = defaultdict(list)  # id: steps
    needle = _needle(query)
    last = "+"
    low = str(query.since_ms) if query.since_ms else "-"
    while True:
        chunk: list[Any] = list(client.xrevrange(names.history, max=last, min=low,
                                                 count=CHUNK) or [])
        for entry_id, fields in chunk:
            raw = fields.get("v") or fields.get("x") or ""
            if needle and needle not in raw:
                continue
            if "v" not in fields:  # a worker's step: kept raw until its event is judged
                waiting[_id_of(raw)].append((entry_id, fields.get("s", ""),
                                             int(fields.get("k", 0) or 0), raw))
                continue
            for data in _accepted(raw, entry_id, query, waiting):
                story = _story(data, waiting.pop(data["i"], []))
                if query.fits(story):
                    found.append(story)
                    if query.limit and len(found) >= query.limit:
                        return found
        if len(chunk) < CHUNK:
            break
        last = "(" + str(chunk[-1][0])
    rest = [_story(None, steps) for steps in waiting.values()]  # begun before the stream
    found += sorted((s for s in rest if s.steps and _wanted(s.steps[0], query)
                     and query.fits(s)), key=lambda s: -s.steps[0]["at_ms"])
    return found[: query.limit] if query.limit else found


def _needle(query: Query) -> str | None:
    """Text every entry of a wanted event holds, written alike in JSON and in the
    accepted entries, to pass over the others unparsed (None: read them all)."""
    for value in (query.event_id, query.dedup_key):
        if value and json.dumps(value, ensure_ascii=False)[1:-1] == value \
                and US not in value and RS not in value:
            return value
    return None


def _id_of(raw: str) -> str:
    """The event id of a worker's step (``line`` writes ``i`` first)."""
    if raw.startswith('{"i":"'):
        return raw[6 : raw.find('"', 6)]
    try:
        return str(json.loads(raw).get("i", ""))
    except (ValueError, AttributeError):
        return ""


def _accepted(raw: str, entry_id: str, query: Query,
              waiting: dict[str, list[tuple[str, str, int, str]]]) -> list[dict[str, Any]]:
    """The accepted steps in one entry that ``query`` wants; the others' waiting steps
    are dropped (their events are judged: not wanted)."""
    found = []
    at_ms = int(entry_id.split("-")[0])
    sides = [US + value + US for value in (query.source, query.route) if value]
    for part in raw.split(RS):
        slot, _, values = part.partition(US)
        if any(side not in US + values + US for side in sides):
            waiting.pop(values.split(US, 1)[0], None)
            continue
        data: dict[str, Any] = dict(zip(ACCEPTED, values.split(US), strict=False))  # older: fewer
        if not _wanted(data, query):
            waiting.pop(str(data.get("i", "")), None)
            continue
        data.update(slot=int(slot or 0), step="accepted", at_ms=at_ms, order=(at_ms, -1))
        found.append(data)
    return found


def _story(first: dict[str, Any] | None, steps: list[tuple[str, str, int, str]]) -> Story:
    """A story from its accepted step (None: trimmed) and its workers' raw steps."""
    parsed = []
    for entry_id, step, slot, raw in steps:
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        ms, _, seq = entry_id.partition("-")
        data.update(step=step, slot=slot, at_ms=int(ms), order=(int(ms), int(seq or 0)))
        parsed.append(data)
    ordered = ([first] if first else []) + sorted(parsed, key=lambda d: d["order"])
    for data in ordered:
        del data["order"]
    head = ordered[0] if ordered else {}
    return Story(str(head.get("i", "")), str(head.get("d", "")), ordered)


def _wanted(data: dict[str, Any], query: Query) -> bool:
    return ((query.dedup_key is None or data.get("d") == query.dedup_key)
            and (query.event_id is None or data.get("i") == query.event_id))


