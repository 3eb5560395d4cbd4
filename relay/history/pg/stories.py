"""Stories from the record in PostgreSQL and the stream's tail together: what the API,
the dashboard and ``trace`` show when ``RELAY_HISTORY_DSN`` is set.

The frontier and the tail are read from Redis first, then the record (``relay.history.pg.
tail`` says why that order leaves no gap); a step both hold (committed, not yet
acknowledged) is shown once: steps are named by (entry, place). Events are found in the
record by its indexes; an event whose steps are in the tail is judged again with all of
them (its state may have moved on), and events accepted in the tail are judged there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from typing import Any

import psycopg
import redis

from relay.errors import RecordDown
from relay.history.entries import Step
from relay.history.pg import reader
from relay.history.pg.reader import Record
from relay.history.pg.tail import frontier, tail
from relay.history.search import Query, search
from relay.history.story import Story
from relay.names import Names
from relay.settings import Settings

log = logging.getLogger(__name__)
TAIL_MOST = 200_000  # entries of the tail read at most (the stream's default cap)

Order = tuple[int, int, int]  # (ms, seq, place): a step's place in the history


class Found(list[Story]):
    """The stories a search found; ``incomplete`` says why some may be missing (the
    stream's tail too long to read whole), else None."""

    def __init__(self, stories: list[Story], incomplete: str | None = None) -> None:
        super().__init__(stories)
        self.incomplete = incomplete


class Finder:
    """The history's searches: the record and the tail with a DSN, else the stream."""

    def __init__(self, settings: Settings, client: redis.Redis,
                 record: Record | None = None) -> None:
        self.settings = settings
        self.client = client
        self.names = Names(settings.prefix)
        self.record = record if record is not None else (
            Record(settings.history_dsn, most=max(1, settings.threads // 2))
            if settings.history_dsn else None)  # half the threads at most wait on it

    def search(self, query: Query) -> Found:
        """The stories ``query`` asks for, newest first; RecordDown when PostgreSQL does
        not answer (a 503: the caller may search the stream instead, ``stream``)."""
        if self.record is None:
            return self.stream(query)
        start = frontier(self.client, self.names)
        steps = tail(self.client, self.names, start, None, TAIL_MOST)  # whole: ``until``
        # bounds when events were accepted, not their stories (as the record's steps)
        try:
            with self.record.connection() as conn:
                return Found(self._merged(conn, query, steps), incomplete=(
                    f"the stream holds more than {TAIL_MOST:,} entries not in the record "
                    f"yet (the export is behind): only its newest {TAIL_MOST:,} entries "
                    "were read, so events of the time before them may be missing here"
                    if steps.cut else None))
        except (psycopg.Error, RecordDown) as exc:
            down = RecordDown.of(exc)
            log.warning("the record in PostgreSQL does not answer a search: %s", down)
            raise down from None

    def stream(self, query: Query) -> Found:
        return Found(search(self.client, self.names, query, self.settings.key_names))

    def _merged(self, conn: Any, query: Query, tail_steps: list[Step]) -> list[Story]:
        in_tail: dict[str, list[Step]] = defaultdict(list)
        for step in tail_steps:
            in_tail[step.event_id].append(step)
        headless = not query.limit or query.event_id is not None  # trace, or one event
        rejudged = len(in_tail) if query.state is not None else 0  # the tail may move
        # an event out of the state asked for: as many more from the record (not else)
        rows = reader.events(conn, query, list(in_tail),
                             query.limit + rejudged if query.limit else 0)
        known = {row["id"]: row for row in rows}
        if headless and not query.needs_accepted and (query.dedup_key or query.event_id):
            stored = reader.steps_by(conn, query.dedup_key, query.event_id)
        else:
            ids = list(known)
            since = min((row["accepted_at"] for row in rows), default=None)
            if headless:  # the tail's events whose start is lost: their steps in the record
                ids += [event_id for event_id in in_tail if event_id not in known]
                since = reader.moment(0) if len(ids) > len(known) else since
            stored = reader.steps_of_events(conn, ids, since) if since else []
        steps: dict[str, dict[Order, dict[str, Any]]] = defaultdict(dict)
        for row in stored:
            steps[row["event_id"]][_order(row["entry"], row["n"])] = _from_row(row)
        for event_id, found in in_tail.items():
            if event_id in known or headless or any(s.step == "accepted" for s in found):
                for step in found:
                    steps[event_id].setdefault(_order(step.entry, step.n), _from_step(step))
        stories = []
        loose = replace(query, text=None)  # the summary's text: PostgreSQL's to judge
        for event_id, by_order in steps.items():
            ordered = [by_order[o] for o in sorted(by_order)]
            row = known.get(event_id, {})
            story = Story(event_id, str(ordered[0]["d"]), ordered, known={
                "severity": row.get("severity"), "summary": row.get("summary"),
                "payload_source": row.get("source"), "key": row.get("key_name")}
                if row else {})
            if loose.fits(story, self.settings.key_names) and _wanted(story, query):
                stories.append((min(by_order), story))
        if query.text is not None:  # the record's rows hold it (its query said so); the
            # tail's events as the record would say (its locale's case folding, not ours)
            judged = [(order, story) for order, story in stories if story.id not in known]
            said = reader.matching(conn, [str(story.facts(self.settings.key_names).get(
                "summary") or "") for _, story in judged], query.text)
            unfit = {story.id for (_, story), hit in zip(judged, said, strict=True)
                     if not hit}
            stories = [(order, story) for order, story in stories if story.id not in unfit]
        stories.sort(key=lambda pair: (pair[1].accepted != {}, pair[0][0], pair[0][1],
                                       -pair[0][2]), reverse=True)  # an entry's in order
        shown = [story for _, story in stories]
        return shown[: query.limit] if query.limit else shown


def _wanted(story: Story, query: Query) -> bool:
    return ((query.dedup_key is None or story.dedup_key == query.dedup_key)
            and (query.event_id is None or story.id == query.event_id))


def _order(entry: str, n: int) -> Order:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0), int(n)


def _from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A step of the record as the stories hold it (``relay.history.search``'s shape)."""
    data = dict(row["detail"] or {})
    data.update(i=row["event_id"], d=row["dedup_key"], step=row["step"],
                slot=int(row["slot"] or 0), at_ms=_order(row["entry"], 0)[0])
    return data


def _from_step(step: Step) -> dict[str, Any]:
    data = dict(step.fields)
    data.update(i=step.event_id, d=step.dedup_key, step=step.step, slot=step.slot,
                at_ms=step.at_ms)
    return data
