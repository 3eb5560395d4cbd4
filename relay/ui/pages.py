"""The dashboard at /ui: server-rendered pages (Jinja2) with a little plain JavaScript
that refreshes them in place; no build step, nothing from another site.

    /ui                          keys, routes and sources, channels, alarms
    /ui/events[?filters]         the history search; /ui/events/<id> one story
    /ui/dead-letters[/<id>]      dead letters; POST .../replay and .../purge (admins)
    /ui/heartbeats[/<name>]      the heartbeat checks, one with its pings (relay/ui/heartbeats.py)
    /ui/sign-in, /ui/sign-out    (relay/ui/signin.py)
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

import redis
from flask import Blueprint, Response, redirect, render_template, request
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as BaseResponse

from relay.deadletters import shown
from relay.errors import (
    AdminRequired,
    BadQuery,
    OperatorRequired,
    RequestError,
    StoreDown,
    Unavailable,
)
from relay.heartbeats.report import Report
from relay.history.pg.stories import Finder, Found
from relay.history.story import STATES
from relay.routes.operators import Operator
from relay.routes.policy import Policy
from relay.settings import Settings
from relay.ui.access import HEADERS, Access
from relay.ui.api import one_story, query_of
from relay.ui.heartbeats import add_heartbeats
from relay.ui.overview import Overview
from relay.ui.signin import add_sign_in

log = logging.getLogger(__name__)
SEARCH_REFRESH_S = 30  # a search may read the whole history (seconds): not every 5 s


def blueprint(settings: Settings, client: redis.Redis, policy: Policy, access: Access,
              heartbeats: Report, finder: Finder) -> Blueprint:
    ui = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates",
                   static_folder="static")
    ui.add_app_template_filter(age, "age")
    ui.add_app_template_filter(when, "when")
    overview = Overview(settings, client, policy)
    sign_in_page = add_sign_in(ui, access)

    def page(template: str, who: Operator | None, status: int = 200, **values: Any) -> Response:
        try:
            _, session = access.caller(request)
        except RequestError:  # a refusal's page, for a wrong token or an ended session
            session = None
        body = render_template(template, who=who, csrf=session.csrf if session else "",
                               signed_in=session is not None, **values)
        return Response(body, status, headers=HEADERS)

    add_heartbeats(ui, access, heartbeats, page)

    @ui.get("", strict_slashes=False)
    def bare() -> BaseResponse:
        """/ui to /ui/, as a relative Location: behind nginx the Host has no port."""
        return redirect("/ui/", 308)

    @ui.get("/")
    def home() -> Response:
        who = access.viewer(request)
        down = [row["name"] for row in heartbeats.rows() if row["state"] == "down"]
        return page("overview.html", who, beats_down=down, **overview.read())

    @ui.get("/events")
    def events() -> Response:
        who = access.viewer(request)
        args = {k: v for k, v in request.args.items() if v}
        try:
            query = query_of(args, record=finder.record is not None)
            found, problems = finder.search(query), []
        except BadQuery as exc:
            found, problems = Found([]), exc.errors
        return page("events.html", who, 400 if problems else 200, args=args, states=STATES,
                    stories=[s.as_json(settings.key_names) for s in found], problems=problems,
                    incomplete=found.incomplete,
                    refresh_s=SEARCH_REFRESH_S, record=finder.record is not None)

    @ui.get("/events/<event_id>")
    def event(event_id: str) -> Response:
        who = access.viewer(request)
        return page("event.html", who, story=one_story(finder, settings, event_id))

    @ui.get("/dead-letters")
    def dead_letters() -> Response:
        who = access.viewer(request)
        return page("dead_letters.html", who, letters=overview.dead_letters().list(200)[::-1],
                    done=request.args.get("done", "")[:200])

    @ui.get("/dead-letters/<dead_id>")
    def dead_letter(dead_id: str) -> Response:
        who = access.viewer(request)
        letter = overview.dead_letters().get(dead_id)
        if letter is None:
            raise NotFound(f"no dead letter {dead_id[:40]}: replayed or purged already?")
        return page("dead_letter.html", who, letter=letter, text=shown(letter))

    @ui.post("/dead-letters/<dead_id>/<verb>")
    def change(dead_id: str, verb: str) -> BaseResponse:
        if verb not in ("replay", "purge"):
            raise NotFound()
        who = access.admin(request)
        letters = overview.dead_letters()
        done = letters.replay(dead_id) if verb == "replay" else letters.purge(dead_id)
        log.warning("dead letter %s: %s by operator %s from %s: %s", dead_id[:40], verb,
                    who.name, access.client_of(request), done)
        return redirect("/ui/dead-letters?" + urlencode({"done": f"{dead_id[:40]}: {done}"}),
                        303)

    @ui.errorhandler(RequestError)
    def refused(exc: RequestError) -> Response:
        if isinstance(exc, OperatorRequired):
            return sign_in_page(exc.errors, 401)
        status = 403 if isinstance(exc, AdminRequired) else exc.status_code
        answer = page("refused.html", None, status, problems=exc.errors, message=exc.message)
        if isinstance(exc, Unavailable):
            answer.headers["Retry-After"] = str(exc.retry_after)
        return answer

    @ui.errorhandler(redis.RedisError)
    def store_down(exc: redis.RedisError) -> Response:
        """Promise 1: Redis failing under a page, a sign-out, a replay or a purge is a 503
        page with Retry-After, never a 500."""
        log.warning("Redis does not answer %s %s: %s", request.method, request.path,
                    type(exc).__name__)
        return refused(StoreDown.of(exc))

    @ui.errorhandler(NotFound)
    def missing(exc: NotFound) -> Response:
        return page("refused.html", None, 404, problems=[exc.description or "not found"],
                    message="Not found")

    return ui


def age(seconds: float) -> str:
    """3 s, 4 min 10 s, 2 h 5 min, 3 d 4 h."""
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60),
                                      ("min", 60, "s", 1)):
        if s >= size:
            return f"{s // size} {unit} {s % size // sub_size} {sub}"
    return f"{s} s"


def when(ms: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
