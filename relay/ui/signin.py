"""Signing in and out of the dashboard: the operator's token in an HttpOnly,
SameSite=Strict cookie (Secure behind HTTPS); a cookie whose token was removed from the
routes file is forgotten, so a loopback client may look again."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from relay.ui.access import COOKIE, HEADERS, Access, client_of, refuse_cross_site

log = logging.getLogger(__name__)


def add_sign_in(ui: Blueprint, access: Access) -> Callable[[list[str] | None, int], Response]:
    """Add /sign-in and /sign-out to ``ui``; return what answers the sign-in page (the
    pages' answer to a 401)."""

    @ui.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> BaseResponse:
        if request.method == "GET":
            return sign_in_page(None, 200)
        refuse_cross_site(request, "a sign-in")
        token = request.form.get("token", "").strip()
        operator = access.find(token) if token else None
        if operator is None:
            return sign_in_page(["not a token of this relay's operators"], 401)
        log.info("operator %s signed in from %s", operator.name, client_of(request))
        answer = redirect("/ui/", 303)
        answer.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                          secure=request.is_secure
                          or request.headers.get("X-Forwarded-Proto") == "https")
        return answer

    @ui.post("/sign-out")
    def sign_out() -> BaseResponse:
        answer = redirect("/ui/sign-in", 303)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    def sign_in_page(problems: list[str] | None, status: int) -> Response:
        body = render_template("sign_in.html", problems=problems or [], who=None,
                               csrf="", signed_in=False)
        answer = Response(body, status, headers=HEADERS)
        stale = request.cookies.get(COOKIE)
        if stale and access.find(stale) is None:  # a token since removed: forget it
            answer.delete_cookie(COOKIE, path="/")
        return answer

    return sign_in_page
