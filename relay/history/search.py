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
from dataclasses import dataclass
from typing import Any

import redis

from relay.history import ACCEPTED, RS, US
from relay.history.story import Story
from relay.names import Names

CHUNK = 1000


@dataclass(frozen=True)
class Query:
    dedup_key: str | None = None
    source: str | None = None
    route: str | None = None
    state: str | None = None  # one of relay.history.story.STATES
    since_ms: int | None = None  # events accepted at or after
    event_id: str | None = None
    limit: int = 50  # 0: all
    until_ms: int | None = None  # events accepted before
    key: str | None = None  # the key's name (relay.history.story.key_name)
    severity: str | None = None  # the event's payload.severity
    text: str | None = None  # in its summary (``q``: any case)
    payload_source: str | None = None  # its payload.source (``source`` is the sender)

    @property
    def needs_accepted(self) -> bool:
        """Whether only a story with its accepted step can fit (the rest is told there)."""
        return any(v is not None for v in (self.source, self.route, self.since_ms,
                                           self.until_ms, self.key, self.severity, self.text,
                                           self.payload_source))

    def fits(self, story: Story, key_names: tuple[str, ...] = ()) -> bool:
        first = story.accepted
        if not first and self.needs_accepted:
            return False
        facts = story.facts(key_names)
        return ((self.source is None or first.get("s") == self.source)
                and (self.route is None or first.get("r") == self.route)
                and (self.state is None or story.state == self.state)
                and (self.until_ms is None or int(first.get("at_ms", 0)) < self.until_ms)
                and (self.since_ms is None or int(first.get("at_ms", 0)) >= self.since_ms)
                and (self.key is None or facts.get("key") == self.key)
                and (self.severity is None or facts.get("severity") == self.severity)
                and (self.payload_source is None
                     or facts.get("payload_source") == self.payload_source)
                and (self.text is None
                     or self.text.lower() in str(facts.get("summary") or "").lower()))


def search(client: redis.Redis, names: Names, query: Query,
           key_names: tuple[str, ...] = ()) -> list[Story]:
    """The stories ``query`` asks for, newest first (``key_names``: the keys' names, for
    ``query.key``)."""
    found: list[Story] = []
    waiting: dict[str, list[tuple[str, str, int, str]]] = defaultdict(list)  # id: steps
    needle = _needle(query)
    last = str(query.until_ms - 1) if query.until_ms else "+"
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
                if query.fits(story, key_names):
                    found.append(story)
                    if query.limit and len(found) >= query.limit:
                        return found
        if len(chunk) < CHUNK:
            break
        last = "(" + str(chunk[-1][0])
    rest = [_story(None, steps) for steps in waiting.values()]  # begun before the stream
    found += sorted((s for s in rest if s.steps and _wanted(s.steps[0], query)
                     and query.fits(s, key_names)), key=lambda s: -s.steps[0]["at_ms"])
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


