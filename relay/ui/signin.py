"""Signing in and out of the dashboard.

The sign-in form carries a pre-session CSRF token: the page sets it in a cookie too
(HttpOnly, SameSite=Strict, ``__Host-`` over HTTPS) and a sign-in must show both, equal
and younger than ``FORM_S`` (a double-submit cookie): another site's form cannot know the
value, and its cross-site post carries no SameSite=Strict cookie, so no browser, with or
without Sec-Fetch-Site, can be made to sign in to an attacker's account (login CSRF).
A sign-in starts a server-side session (relay/ui/sessions.py): the cookie holds its id,
never the token. Sign-out ends the session in Redis, so a replayed cookie is refused.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import redis
from flask import Blueprint, Request, Response, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from relay.auth import digest
from relay.errors import AdminRequired, Unavailable
from relay.ui.access import (
    COOKIE,
    HEADERS,
    HOST_ONLY,
    SIGN_IN_AGAIN,
    Access,
    refuse_cross_site,
    same,
)

log = logging.getLogger(__name__)
FORM_COOKIE = "pd_relay_sign_in"
FORM_S = 3600  # a sign-in form's token is good this long
STALE_FORM = "the form's CSRF token is missing, wrong or stale: reload the page"


def set_cookie(answer: BaseResponse, name: str, value: str, secure: bool,
               max_age: int | None = None) -> None:
    answer.set_cookie(HOST_ONLY + name if secure else name, value, max_age=max_age,
                      httponly=True, samesite="Strict", path="/", secure=secure)


def forget_cookie(answer: BaseResponse, name: str) -> None:
    for shown in (name, HOST_ONLY + name):
        if shown in request.cookies:
            answer.delete_cookie(shown, path="/", secure=shown.startswith(HOST_ONLY),
                                 httponly=True, samesite="Strict")


def add_sign_in(ui: Blueprint, access: Access) -> Callable[[list[str] | None, int], Response]:
    """Add /sign-in and /sign-out to ``ui``; return what answers the sign-in page (the
    pages' answer to a 401)."""
    clock = access.sessions.clock

    def form_token(req: Request) -> str | None:
        """The request's pre-session token, while fresh: ``<issued>.<random>``."""
        value = access.cookie(req, FORM_COOKIE)
        issued, _, _ = (value or "").partition(".")
        if not issued.isdigit() or not 0 <= clock() - int(issued) < FORM_S:
            return None
        return value

    @ui.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> BaseResponse:
        if request.method == "GET":
            return sign_in_page(None, 200)
        refuse_cross_site(request, "a sign-in")
        expected = form_token(request)
        if expected is None or not same(request.form.get("csrf", ""), expected):
            return sign_in_page([STALE_FORM], 403)
        token = request.form.get("token", "").strip()
        operator = access.find(token) if token else None
        if operator is None:
            return sign_in_page(["not a token of this relay's operators"], 401)
        old = access.cookie(request, COOKIE)
        try:
            if old:
                access.sessions.close(old)
            session_id = access.sessions.open(operator.name, digest(token))
        except redis.RedisError as exc:
            raise Unavailable([f"sessions: Redis does not answer ({type(exc).__name__})"]
                              ) from exc
        log.info("operator %s signed in from %s", operator.name, access.client_of(request))
        answer = redirect("/ui/", 303)
        forget_cookie(answer, FORM_COOKIE)
        set_cookie(answer, COOKIE, session_id, access.secure(request))
        return answer

    @ui.post("/sign-out")
    def sign_out() -> BaseResponse:
        session_id = access.cookie(request, COOKIE)
        try:
            session = access.sessions.find(session_id) if session_id else None
            if session is not None and session_id:
                if not same(request.form.get("csrf", ""), session.csrf):
                    raise AdminRequired([STALE_FORM])
                access.sessions.close(session_id, session)
        except redis.RedisError as exc:
            raise Unavailable([f"sessions: Redis does not answer ({type(exc).__name__})"]
                              ) from exc
        if session is not None:
            log.info("operator %s signed out from %s", session.operator,
                     access.client_of(request))
        answer = redirect("/ui/sign-in", 303)
        forget_cookie(answer, COOKIE)
        return answer

    def sign_in_page(problems: list[str] | None, status: int) -> Response:
        secure = access.secure(request)
        token = form_token(request)
        fresh = token is None or clock() - int(token.partition(".")[0]) > FORM_S / 2
        if fresh:
            token = f"{int(clock())}.{secrets.token_urlsafe(24)}"
        body = render_template("sign_in.html", problems=problems or [], who=None,
                               csrf=token, signed_in=False,
                               open_view=access.settings.ui_open_view)
        answer = Response(body, status, headers=HEADERS)
        if fresh:
            set_cookie(answer, FORM_COOKIE, str(token), secure, FORM_S)
        if SIGN_IN_AGAIN in (problems or []):
            forget_cookie(answer, COOKIE)  # an ended session: forget its cookie
        return answer

    return sign_in_page
