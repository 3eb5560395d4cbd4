"""The history API: ``GET /api/v1/events`` (a search) and ``GET /api/v1/events/<id>``
(one story), for viewers (relay/ui/access.py); documented in relay/openapi.yaml."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, request
from werkzeug.exceptions import NotFound

from relay.errors import BadQuery
from relay.history.pg.stories import Finder
from relay.history.search import Query
from relay.history.story import STATES
from relay.settings import Settings
from relay.ui.access import Access

MAX_LIMIT = 500
AGO_RE = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ID_RE = re.compile(r"^[0-9a-f]{16}$")
LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the latest time Python and the
# stream's ids both hold (a later one found nothing, and was a 500 in the record's reader)


PARAMETERS = {"dedup_key", "source", "route", "state", "since", "until", "limit", "key",
              "severity", "q", "payload_source"}
PAYLOAD = ("q", "severity", "payload_source")  # read from the stored event: the record's


def query_of(args: dict[str, str], now: float | None = None, record: bool = True) -> Query:
    """A search from query parameters; raise BadQuery naming every bad one (``record``:
    PostgreSQL keeps the record, so the event's payload can be searched)."""
    problems = []
    for extra in sorted(set(args) - PARAMETERS):
        problems.append(f"{extra}: unknown parameter")
    for name in PAYLOAD:
        if args.get(name) and not record:
            problems.append(f"{name}: searches the events' payloads, which only the record "
                            "in PostgreSQL keeps (RELAY_HISTORY_DSN)")
    for name in sorted(set(args) & PARAMETERS):
        if record and "\x00" in str(args[name]):
            problems.append(f"{name}: may not hold a NUL character (the record in "
                            "PostgreSQL keeps none)")
    state = args.get("state") or None
    if state is not None and state not in STATES:
        problems.append(f"state: want one of {', '.join(STATES)}")
    limit = args.get("limit", "50")
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_LIMIT:
        problems.append(f"limit: want a whole number from 1 to {MAX_LIMIT}")
    times: dict[str, int | None] = {"since": None, "until": None}
    for name in times:
        if args.get(name):
            times[name] = since(args[name], time.time() if now is None else now)
            if times[name] is None:
                problems.append(f"{name}: want a time (ISO 8601, e.g. 2026-12-01T08:00:00Z) "
                                "or an age (90s, 15m, 2h, 7d)")
    if problems:
        raise BadQuery(problems)
    return Query(dedup_key=args.get("dedup_key") or None, source=args.get("source") or None,
                 route=args.get("route") or None, state=state, since_ms=times["since"],
                 until_ms=times["until"], limit=int(limit), key=args.get("key") or None,
                 severity=args.get("severity") or None, text=args.get("q") or None,
                 payload_source=args.get("payload_source") or None)


def since(text: str, now: float) -> int | None:
    """Milliseconds since the epoch of an ISO 8601 time or an age before ``now``, clamped
    to the history's span (nothing is older than the epoch: the ids of its stream; nothing
    later than ``LAST_MS``)."""
    ago = AGO_RE.match(text.strip())
    if ago:
        seconds = min(int(ago.group(1)), 10**12) * UNITS[ago.group(2)]  # no float overflow
        return max(0, int((now - seconds) * 1000))
    try:
        when = datetime.fromisoformat(text.strip())
        ms = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
    except (ValueError, OverflowError):
        return None
    return min(max(0, ms), LAST_MS)


def one_story(finder: Finder, settings: Settings, event_id: str) -> dict[str, Any]:
    """The story of event ``event_id`` as JSON; NotFound when the history has none."""
    found = finder.search(Query(event_id=event_id, limit=1)) if ID_RE.match(event_id) else []
    if not found:
        raise NotFound(f"no event {event_id[:40]} in the history (kept "
                       f"{settings.history_days:g} days, RELAY_HISTORY_DAYS)")
    return found[0].as_json(settings.key_names)


def blueprint(settings: Settings, finder: Finder, access: Access) -> Blueprint:
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @api.get("/events")
    def events() -> dict[str, Any]:
        access.viewer(request)
        query = query_of(dict(request.args), record=finder.record is not None)
        found = finder.search(query)
        return {"events": [story.as_json(settings.key_names) for story in found],
                "count": len(found), "limit": query.limit, "incomplete": found.incomplete}

    @api.get("/events/<event_id>")
    def event(event_id: str) -> dict[str, Any]:
        access.viewer(request)
        return one_story(finder, settings, event_id)

    return api
