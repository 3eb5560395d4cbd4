"""Who may look and who may change: the operators of the routes file (``operators``).

A request shows who it is by an operator's token as ``Authorization: Bearer`` (the API,
scripts) or by the session cookie the sign-in page sets (the pages: a random session id,
never the token, HttpOnly, SameSite=Strict, Secure and ``__Host-`` over HTTPS; see
relay/ui/sessions.py). Without either nobody looks, loopback or not, unless the operator
opens viewing to anyone (``RELAY_UI_OPEN_VIEW``). Changes (replay, purge) need an admin;
from a page they must also carry the session's CSRF token and must not be cross-site.
``/metrics`` and ``/readyz`` answer an operator, the stack's own checks (straight over
the ingress's Unix socket) and the clients of ``RELAY_ADMIN_ALLOW``.
"""

from __future__ import annotations

import hmac

import redis
from flask import Request, g

from relay.auth import digest, request_token
from relay.errors import AdminRequired, OperatorRequired, Unavailable
from relay.http import UNIX_PEER, client_address, from_proxy, within
from relay.routes.operators import Operator
from relay.routes.policy import Policy
from relay.settings import Settings
from relay.ui.sessions import Session, Sessions

COOKIE = "pd_relay_session"
HOST_ONLY = "__Host-"  # over HTTPS: Secure, Path=/, no Domain (no sibling host may set it)
HEADERS = {  # every page: no framing (clickjacking), nothing from elsewhere, no caching
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
OPEN = Operator("anyone", "viewer")  # RELAY_UI_OPEN_VIEW: whoever looks without a token
SIGN_IN_AGAIN = "session: expired, signed out or ended: sign in again"


def refuse_cross_site(request: Request, what: str) -> None:
    """Raise AdminRequired when a browser says the request comes from another site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise AdminRequired([f"{what} from another site"])


def same(given: str, wanted: str) -> bool:
    """A form's token against the right one, in constant time (as bytes: any characters)."""
    return hmac.compare_digest(given.encode(), wanted.encode())


class Access:
    def __init__(self, settings: Settings, policy: Policy, sessions: Sessions) -> None:
        self.settings = settings
        self.policy = policy
        self.sessions = sessions

    def client_of(self, request: Request) -> str:
        """Who is asking (``relay.http.client_address``: behind our nginx, what it saw)."""
        return client_address(request.remote_addr, request.headers.get("X-Forwarded-For", ""),
                              self.settings.trusted_proxies)

    def secure(self, request: Request) -> bool:
        """Whether the browser talks HTTPS: to us, or to our nginx (its X-Forwarded-Proto,
        believed only from it: ``relay.http.from_proxy``)."""
        return request.is_secure or (
            request.headers.get("X-Forwarded-Proto") == "https"
            and from_proxy(request.remote_addr, self.settings.trusted_proxies))

    def cookie(self, request: Request, name: str) -> str | None:
        """The request's cookie ``name``: over HTTPS only its ``__Host-`` form, which no
        sibling host (a Domain= cookie) and no plain-http answer can set; over plain http
        only the bare name (a browser sends no Secure cookie there)."""
        return request.cookies.get(HOST_ONLY + name if self.secure(request) else name) or None

    def find(self, token: str) -> Operator | None:
        wanted = digest(token)
        for operator in self.policy.routes.operators:
            if wanted in operator.token_hashes:
                return operator
        return None

    def operator_of(self, session: Session) -> Operator | None:
        """The session's operator, while the routes file still holds them with the token
        they signed in with."""
        for operator in self.policy.routes.operators:
            if operator.name == session.operator and session.token in operator.token_hashes:
                return operator
        return None

    def caller(self, request: Request) -> tuple[Operator | None, Session | None]:
        """Who the request shows (an operator, and their session when by cookie), once per
        request; raise OperatorRequired for a wrong token or an ended session."""
        if "pd_relay_caller" not in g:
            g.pd_relay_caller = self._caller(request)
        found: tuple[Operator | None, Session | None] = g.pd_relay_caller
        return found

    def _caller(self, request: Request) -> tuple[Operator | None, Session | None]:
        token = request_token(None, request.headers.get("Authorization"))
        if token:
            operator = self.find(token)
            if operator is None:
                raise OperatorRequired(["token: not one of this relay's operators"])
            return operator, None
        session_id = self.cookie(request, COOKIE)
        if session_id is None:
            return None, None
        try:
            session = self.sessions.find(session_id)
            operator = self.operator_of(session) if session else None
            if session is not None and operator is None:
                self.sessions.close(session_id, session)
        except redis.RedisError as exc:
            raise Unavailable([f"sessions: Redis does not answer ({type(exc).__name__}); "
                               "an operator's token (Authorization: Bearer) needs none"]
                              ) from exc
        if session is None or operator is None:
            raise OperatorRequired([SIGN_IN_AGAIN])
        return operator, session

    def viewer(self, request: Request) -> Operator:
        """Who is looking; raise OperatorRequired when nobody may."""
        operator, _ = self.caller(request)
        if operator is not None:
            return operator
        if self.settings.ui_open_view:
            return OPEN
        raise OperatorRequired(["no operator token or session: sign in (or send "
                                "Authorization: Bearer)"])

    def admin(self, request: Request) -> Operator:
        """Who makes a change; raise OperatorRequired or AdminRequired when they may not."""
        operator, session = self.caller(request)
        if operator is None:
            raise OperatorRequired(["no operator token or session: only an admin may change "
                                    "anything"])
        if not operator.admin:
            raise AdminRequired([f"operator {operator.name} is a viewer, not an admin"])
        if session is not None:
            refuse_cross_site(request, "a change")
            if not same(request.form.get("csrf", ""), session.csrf):
                raise AdminRequired(["the form's CSRF token is missing or wrong: reload "
                                     "the page"])
        return operator

    def monitor(self, request: Request) -> None:
        """Let through a reader of /metrics or /readyz: an operator (token or session), the
        stack's own checks (over the ingress's Unix socket, no X-Forwarded-For: nobody
        behind nginx), a client of RELAY_ADMIN_ALLOW; raise OperatorRequired otherwise."""
        operator, _ = self.caller(request)
        if operator is not None:
            return
        if request.remote_addr == UNIX_PEER and "X-Forwarded-For" not in request.headers:
            return
        client = self.client_of(request)
        if within(client, self.settings.admin_allow):
            return
        raise OperatorRequired([f"client {client[:64]}: not in RELAY_ADMIN_ALLOW; send an "
                                "operator's token (Authorization: Bearer)"])
