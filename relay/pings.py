"""Heartbeat pings at the ingress (issue 28): ``/ping/...`` as healthchecks.io has them,
and the Watchdog alerts of the adapters (the checks they find: ``relay.pingchecks``).

    POST|GET|HEAD /ping/<name>[/start|/fail|/<exit status 0..255>]     a source's API key
    POST|GET|HEAD /ping/<token>/<name>[/start|/fail|/<exit status>]    the check's ping token

A check's name is never ``start``, ``fail``, ``log`` or all digits, so a path's second
segment tells the two forms apart. The answer is the check's state after the ping
(HEAD: its headers only), with ``Ping-Body-Limit``: the first ``BODY_LIMIT`` bytes of a
body are kept with the ping; a body past the ingress's cap is a 413 like any request's.

Who may ping: a sender the ingress knows (a source's API key, one of the relay's routing
keys in X-Routing-Key, anyone when anonymous senders are allowed) when the check lists no
``sources`` or lists its source; or whoever holds the check's ping token. Refusals, in
this order, so that a client without credentials learns nothing of the checks' names:
400 a bad signal (says nothing of any check), 401 no or unknown credentials (with a
token: a wrong token and a check without one, or none of that name, get the same 401),
404 no such check (only a known sender gets this far), 403 a source the check does not
list. Redis down: 503 with Retry-After. A ping is one call of the store's ping script.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from flask import Flask, request

from relay.adapters import WATCHDOGS
from relay.auth import Sender
from relay.errors import (
    BadPing,
    Forbidden,
    StoreDown,
    StoreFormatError,
    Unauthorized,
    Unavailable,
    UnknownCheck,
)
from relay.heartbeats.model import BODY_LIMIT, Check, Ping
from relay.ingest import Credentials
from relay.logs import printable
from relay.routes.policy import Policy
from relay.routes.sources import ANONYMOUS, ROUTING_KEY_SENDER

log = logging.getLogger(__name__)
TOKEN_SENDER = "ping-token"  # who pinged, for a ping by token (and the refusals' counts)
SIGNAL_WORDS = ("start", "fail", "log")  # a path's last segment, when not a name
EXIT_STATUS = re.compile(r"-?[0-9]+")


class Checks(Protocol):
    """Every check by name (``relay.heartbeats.catalog.Catalog``); ``read``: the run-time
    ones were read (until then, Redis down at the start, a name is not known unknown)."""

    read: bool

    def get(self, name: str) -> Check | None: ...

    def watchdogs(self) -> Sequence[Check]: ...


class PingStore(Protocol):
    """What the ingress uses of ``relay.heartbeats.store.Heartbeats``."""

    def ping(self, check: Check, signal: str, body: bytes = b"", by: str = "",
             exit_status: int | None = None) -> Ping: ...

    def token_matches(self, name: str, token: str) -> bool: ...


def signal_of(word: str) -> tuple[str, int | None]:
    """A path's signal segment as (signal, exit status); BadPing when it is none."""
    if word in ("", "start", "fail"):
        return word or "success", None
    if word.isascii() and word.isdigit() and len(word) <= 3 and int(word) <= 255:
        return ("success" if int(word) == 0 else "fail"), int(word)
    raise BadPing([f"signal: want start, fail or an exit status 0..255, got "
                   f"{printable(word, 20)!r}"])


def parse(rest: str) -> tuple[str | None, str, str]:
    """``/ping/<rest>`` as (token or None, check name, signal segment); NotFound-shaped
    paths (empty segments, more than three) raise UnknownCheck."""
    parts = rest.split("/")
    if not all(parts) or len(parts) > 3:
        raise UnknownCheck(["path: want /ping/<name>[/<signal>] or "
                            "/ping/<token>/<name>[/<signal>]"])
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2 and not (parts[1] in SIGNAL_WORDS or EXIT_STATUS.fullmatch(parts[1])):
        return parts[0], parts[1], ""
    return None, parts[0], parts[1] if len(parts) == 2 else ""


def may_ping(check: Check, sender: str) -> None:
    """Refuse (403) a sender the check's ``sources`` do not list."""
    if check.sources is not None and sender not in check.sources:
        raise Forbidden([f"check {check.name}: source {sender} may not ping it (its sources: "
                         f"{', '.join(check.sources) or 'none'})"], sender)


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def answer(ping: Ping) -> dict[str, Any]:
    return {"check": ping.name, "state": ping.state, "expected_at": iso(ping.expected_at),
            "down_at": iso(ping.down_at)}


class Pings:
    def __init__(self, policy: Policy, checks: Checks, store: PingStore) -> None:
        self.policy = policy
        self.checks = checks
        self.store = store

    def take(self, rest: str, credentials: Credentials, body: Callable[[], bytes]) -> Ping:
        """The ping of ``/ping/<rest>``, or the RequestError that refuses it."""
        token, name, word = parse(rest)
        signal, exit_status = signal_of(word)
        if token is not None:
            if not self._stored(self.store.token_matches, name, token):
                raise Unauthorized(["ping token: not this check's (or no check of that "
                                    "name); `pd-relay heartbeat token NAME` makes one"],
                                   TOKEN_SENDER)
            by = TOKEN_SENDER
        else:
            by = self.sender(credentials).name
        check = self.checks.get(name)
        if check is None:
            self.known()
            raise UnknownCheck([f"no check named {printable(name, 64)}"])
        if token is None:
            may_ping(check, by)
        ping: Ping = self._stored(self.store.ping, check, signal, body(), by, exit_status)
        log.debug("ping check=%s signal=%s exit_status=%s by=%s client=%s: %s", check.name,
                  signal, exit_status, by, credentials.client, ping.state)
        return ping

    def sender(self, credentials: Credentials) -> Sender:
        """Who sends by the request's headers: a source by its API key (an unknown one is
        a 401), one of the relay's routing keys, or anonymous when allowed."""
        router, gate = self.policy.current
        sender = gate.sender(credentials.api_key, credentials.authorization)
        if sender is not None:
            return sender
        if credentials.routing_key in router.slots:
            return Sender(ROUTING_KEY_SENDER)
        raise Unauthorized(["no API key (X-API-Key or Authorization: Bearer) and no ping "
                            "token in the path (/ping/<token>/<name>)"], ANONYMOUS)

    def watched(self, adapter: str, body: Any, sender: str) -> tuple[list[Check], Any, int]:
        """A webhook's Watchdog alerts (``relay.adapters.WATCHDOGS``) of the checks the
        sender may ping: the checks its firing ones ping, the webhook without any of them
        (None when none is left) and how many there were. An alert of a check the sender
        may not ping is an alert like any: it neither pings (silences) the check nor takes
        the rest of the webhook down with a refusal (Alertmanager does not retry a 4xx)."""
        split = WATCHDOGS.get(adapter)
        if split is not None:
            self.known()
        watchdogs = [check for check in self.checks.watchdogs()
                     if check.sources is None or sender in check.sources] \
            if split is not None else []
        if split is None or not watchdogs:
            return [], body, 0
        found, rest = split(body, watchdogs)
        beats = [check for alert, check in found if alert.get("status") == "firing"]
        alerts = len({id(alert) for alert, _ in found})
        return beats, (rest if not found or rest["alerts"] else None), alerts

    def known(self) -> None:
        """Refuse (503) while the run-time checks were never read: a name may be one of
        them (a 404 is not retried; a Watchdog alert of one would be stored as an
        event)."""
        if not self.checks.read:
            raise Unavailable(["heartbeat checks: the run-time ones not read yet (Redis "
                               "did not answer)"])

    def beat(self, checks: list[Check], by: str) -> int:
        """Ping each check (a Watchdog alert's success); how many (a run-time check
        removed since the catalog was read is not)."""
        pinged = 0
        for check in checks:
            try:
                self._stored(self.store.ping, check, "success", b"", by, None)
            except UnknownCheck:  # removed a moment ago: its alert is no one's ping
                continue
            pinged += 1
        return pinged

    @staticmethod
    def _stored(call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except redis.RedisError as exc:
            log.warning("ping not taken: Redis %s", type(exc).__name__)
            raise StoreDown.of(exc) from exc
        except StoreFormatError as exc:  # a newer release's state: this one cannot ping it
            log.error("ping not taken: %s", exc)
            raise Unavailable([str(exc)]) from exc


def register(app: Flask, pings: Pings, credentials: Callable[[], Credentials]) -> None:
    def ping(rest: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        taken = pings.take(rest, credentials(), lambda: request.stream.read(BODY_LIMIT))
        return answer(taken), 200, {"Ping-Body-Limit": str(BODY_LIMIT)}

    app.add_url_rule("/ping/<path:rest>", "ping", ping, methods=["GET", "POST"],
                     merge_slashes=False)  # GET brings HEAD: headers only
