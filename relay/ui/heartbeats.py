"""The dashboard's Heartbeats pages (viewers may look): every check with its state, last
ping, next due time and since when it is down; one check's settings and its last pings.

    /ui/heartbeats           the checks (the routes file's, then those added at run time)
    /ui/heartbeats/<name>    one check and its recent pings
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from relay.heartbeats.model import BODY_LIMIT
from relay.heartbeats.report import Report, cells, gap_note
from relay.ui.access import Access

BODY_SHOWN = 1000  # characters of a ping's body shown on the check's page


def add_heartbeats(ui: Blueprint, access: Access, report: Report,
                   page: Callable[..., Response]) -> None:
    @ui.get("/heartbeats")
    def heartbeats() -> Response:
        who = access.viewer(request)
        checks = report.checks()
        return page("heartbeats.html", who, rows=[(row, cells(row)) for row in
                                                  report.rows(checks)],
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
                    pings=[_ping(p) for p in pings], body_limit=BODY_LIMIT)


def _ping(ping: dict[str, Any]) -> dict[str, Any]:
    """A stored ping for the page: its body cut to BODY_SHOWN characters (escaped by the
    template, as every value)."""
    body = str(ping.get("body") or "")
    cut = len(body) > BODY_SHOWN
    return {**ping, "body": body[:BODY_SHOWN] + ("…" if cut else "")}
