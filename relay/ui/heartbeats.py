"""The dashboard's Heartbeats pages (viewers may look): every check with its state, last
ping, next due time and since when it is down; one check's settings and its last pings.

    /ui/heartbeats[?state=]  the checks: down, started and late first, then the others in
                             the routes file's order and those added at run time; at most
                             PAGE_ROWS (status --json has them all)
    /ui/heartbeats/<name>    one check and its recent pings
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from relay.errors import BadQuery
from relay.heartbeats.model import BODY_LIMIT, STATES
from relay.heartbeats.report import Report, cells, gap_note
from relay.heartbeats.store import KEEP_PINGS, SHORT_BYTES
from relay.ui.access import Access

BODY_SHOWN = 1000  # characters of a ping's body shown on the check's page
PAGE_ROWS = 500  # checks listed on one page (refreshed every few seconds)
FIRST = {"down": 0, "started": 1, "late": 2}  # what needs attention, first
COUNTED = ("down", "started", "late", "up", "new", "paused")


def add_heartbeats(ui: Blueprint, access: Access, report: Report,
                   page: Callable[..., Response]) -> None:
    @ui.get("/heartbeats")
    def heartbeats() -> Response:
        who = access.viewer(request)
        state = request.args.get("state") or ""
        if state and state not in STATES:
            raise BadQuery([f"state: want one of {', '.join(STATES)}"])
        checks = report.checks()
        rows = sorted(report.rows(checks), key=lambda row: FIRST.get(row["state"], 3))
        counted = Counter(row["state"] for row in rows)
        if state:
            rows = [row for row in rows if row["state"] == state]
        return page("heartbeats.html", who, rows=[(row, cells(row)) for row in
                                                  rows[:PAGE_ROWS]],
                    more=max(0, len(rows) - PAGE_ROWS), state=state, states=STATES,
                    counts=", ".join(f"{counted[s]} {s}" for s in COUNTED if counted[s]),
                    gap=gap_note(report.gap(checks)))

    @ui.get("/heartbeats/<name>")
    def heartbeat(name: str) -> Response:
        who = access.viewer(request)
        found = report.one(name)
        if found is None:
            raise NotFound(f"no heartbeat check {name[:40]}: not in the routes file, nor "
                           "added with `pd-relay heartbeat add`")
        check, row, pings = found
        return page("heartbeat.html", who, check=check, row=row, cell=cells(row),
                    pings=[_ping(p) for p in pings], body_limit=BODY_LIMIT, kept=KEEP_PINGS,
                    short=SHORT_BYTES, shown=BODY_SHOWN)


def _ping(ping: dict[str, Any]) -> dict[str, Any]:
    """A stored ping for the page: its body cut to BODY_SHOWN characters (escaped by the
    template, as every value)."""
    body = str(ping.get("body") or "")
    cut = len(body) > BODY_SHOWN
    return {**ping, "body": body[:BODY_SHOWN] + ("…" if cut else "")}
