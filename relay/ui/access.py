"""Who may look and who may change: the operators of the routes file (``operators``).

A request shows its token as ``Authorization: Bearer`` (the API, scripts) or in the
cookie the sign-in page sets (the pages: HttpOnly, SameSite=Strict). Without a token, a
loopback client may look (``LOOPBACK``), nobody else. Changes (replay, purge) need an
admin; from a page they must also carry the form's CSRF token (an HMAC of the operator's
token, so another site cannot know it) and must not be a cross-site request.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Request

from relay.auth import digest, request_token
from relay.errors import AdminRequired, OperatorRequired
from relay.http import client_address, is_loopback
from relay.routes.operators import Operator
from relay.routes.policy import Policy

COOKIE = "pd_relay_operator"
HEADERS = {  # every page: no framing (clickjacking), nothing from elsewhere, no caching
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
LOOPBACK = Operator("loopback", "viewer")


def client_of(request: Request) -> str:
    """Who is asking (``relay.http.client_address``: behind our nginx, what it saw)."""
    return client_address(request.remote_addr, request.headers.get("X-Forwarded-For", ""))


def refuse_cross_site(request: Request, what: str) -> None:
    """Raise AdminRequired when a browser says the request comes from another site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise AdminRequired([f"{what} from another site"])


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"pd-relay csrf", hashlib.sha256).hexdigest()


class Access:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def find(self, token: str) -> Operator | None:
        wanted = digest(token)
        for operator in self.policy.routes.operators:
            if wanted in operator.token_hashes:
                return operator
        return None

    def token(self, request: Request) -> tuple[str | None, bool]:
        """The request's token and whether it came in the cookie."""
        given = request_token(None, request.headers.get("Authorization"))
        if given:
            return given, False
        return request.cookies.get(COOKIE) or None, True

    def viewer(self, request: Request) -> Operator:
        """Who is looking; raise OperatorRequired when nobody may."""
        token, _ = self.token(request)
        if token:
            found = self.find(token)
            if found is None:
                raise OperatorRequired(["token: not one of this relay's operators"])
            return found
        if is_loopback(client_of(request)):
            return LOOPBACK
        raise OperatorRequired(["no operator token (a loopback client may look without one)"])

    def admin(self, request: Request) -> Operator:
        """Who makes a change; raise OperatorRequired or AdminRequired when they may not."""
        token, by_cookie = self.token(request)
        if not token:
            raise OperatorRequired(["no operator token: only an admin may change anything"])
        operator = self.viewer(request)
        if not operator.admin:
            raise AdminRequired([f"operator {operator.name} is a viewer, not an admin"])
        if by_cookie:
            refuse_cross_site(request, "a change")
            if not hmac.compare_digest(request.form.get("csrf", ""), csrf_token(token)):
                raise AdminRequired(["the form's CSRF token is missing or wrong: reload "
                                     "the page"])
        return operator
