"""Who may send: API keys of the routes file's sources, the operator's routing keys, or
anyone when the operator allows anonymous senders.

A request's API key comes from ``X-API-Key`` or ``Authorization: Bearer``; only its
SHA-256 is kept (``pd-relay token new`` prints a key once, with its hash). Without one,
each event must carry one of the relay's routing keys, as PagerDuty itself demands, so
PagerDuty receivers work unchanged. An unknown API key, or neither, is a 401; a 403 for
a trigger a source's matchers do not allow, an event that would take a route the source
was not given (``routes:``), and any sender's dedup_key in the relay's own namespace
(``RESERVED``, and ``heartbeat:`` of the heartbeat checks' pages). Whose incident an
acknowledge or resolve is, the event store decides: the sender that opened it
(``relay.owners.owner_of``; ENQUEUE refuses another's).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from relay.errors import Forbidden, Unauthorized
from relay.heartbeats.model import DEDUP_PREFIX
from relay.router import Route
from relay.routes.channels import Use
from relay.routes.config import Route as Rule
from relay.routes.config import Source
from relay.routes.matchers import Matcher, all_hold
from relay.routes.sources import ANONYMOUS, ROUTING_KEY_SENDER, UNKNOWN_API_KEY

FOLLOW_UPS = ("acknowledge", "resolve")  # act on an incident: no payload, no route
RESERVED = "pd-relay-self-"  # the relay's own alarms' dedup_keys (housekeeping.selfcheck)
# and its heartbeat checks' pages (heartbeat:<name>, relay.heartbeats.pages): a sender's
# trigger of one first would own the incident, and the check's page would be refused
OWN_PREFIXES = (RESERVED, DEDUP_PREFIX)


def new_token() -> tuple[str, str]:
    """A new API key and the hash the routes file keeps."""
    token = "pdr_" + secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Sender:
    name: str  # the source's name, ``routing-key`` or ``anonymous``
    matchers: tuple[Matcher, ...] = ()
    channels: tuple[Use, ...] = ()  # channels that hear of all it sends
    follow_up_any: bool = False  # may act on any sender's incidents
    routes: tuple[str, ...] | None = None  # the routes it may take (None: any)
    slots: frozenset[int] = frozenset()  # those routes' keys and night keys, by place (from 1)


def request_token(api_key: str | None, authorization: str | None) -> str | None:
    """The API key of a request's ``X-API-Key`` or ``Authorization: Bearer`` header."""
    if api_key:
        return api_key.strip()
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class Gate:
    def __init__(self, sources: tuple[Source, ...], allow_anonymous: bool,
                 rules: tuple[Rule, ...] = (), key_names: tuple[str, ...] = ()) -> None:
        self.by_hash = {h: source for source in sources for h in source.key_hashes}
        self.allow_anonymous = allow_anonymous
        self.slots = {source.name: frozenset(
            key_names.index(key) + 1 for rule in rules if rule.name in (source.routes or ())
            for key in (*rule.keys, *rule.night_keys) if key in key_names)
            for source in sources}

    def sender(self, api_key: str | None, authorization: str | None) -> Sender | None:
        """The request's sender by its API key; None when it gave none (its events must
        then carry routing keys, unless anonymous senders are allowed). Raises
        Unauthorized for a key no source holds."""
        token = request_token(api_key, authorization)
        if token is None:
            return Sender(ANONYMOUS) if self.allow_anonymous else None
        source = self.by_hash.get(digest(token))
        if source is None:
            raise Unauthorized(["API key: not one this relay knows (X-API-Key or "
                                "Authorization: Bearer)"], UNKNOWN_API_KEY)
        return Sender(source.name, source.matchers, source.channels, source.follow_up_any,
                      source.routes, self.slots.get(source.name, frozenset()))

    @staticmethod
    def reserved(sender: Sender | None, event: dict[str, Any], at: str) -> None:
        """Refuse (403) an event in the relay's own namespace of dedup_keys: nobody but the
        relay raises or resolves its own alarms."""
        dedup_key = event.get("dedup_key")
        if isinstance(dedup_key, str) and dedup_key.startswith(OWN_PREFIXES):
            name = sender.name if sender else ROUTING_KEY_SENDER
            prefix = next(p for p in OWN_PREFIXES if dedup_key.startswith(p))
            raise Forbidden([f"{at or 'event'}: dedup_keys starting {prefix!r} are the "
                             "relay's own alarms"], name)

    @staticmethod
    def may_take(sender: Sender | None, route: Route, at: str) -> None:
        """Refuse (403) a source's trigger or change event that would take a route it was
        not given (its ``routes:``), or name a key outside them. Follow-ups go where their
        incident is (the event store checks whose it is); maintenance holds any route's."""
        if sender is None or sender.routes is None or route.rule.startswith("maintenance:"):
            return
        if route.rule == "routing-key":  # a follow-up too: naming a key moves an incident
            if -route.slot in sender.slots:
                return
            where = "a key outside its routes"
        elif route.action in FOLLOW_UPS:
            return
        elif route.rule.removeprefix("muted:") in sender.routes:  # muted: suppressed
            if route.slot == 0 or route.slot in sender.slots:
                return
            where = f"a key outside its routes (route {route.rule}'s keys all drain)"
        else:
            where = "no route" if route.rule == "default" else f"route {route.rule}"
        raise Forbidden([f"{at or 'event'}: source {sender.name} may send only by its routes "
                         f"({', '.join(sender.routes)}); this event would take {where}"],
                        sender.name)

    def admit(self, sender: Sender | None, event: dict[str, Any], configured: bool,
              at: str, context: dict[str, str]) -> Sender:
        """Who sends ``event`` (``configured``: it names one of the relay's routing keys);
        raise Unauthorized or Forbidden when it may not be sent."""
        if sender is None:
            if not configured:
                raise Unauthorized([f"{at or 'event'}: no API key (X-API-Key or Authorization: "
                                    "Bearer) and no routing_key of this relay"], ANONYMOUS)
            return Sender(ROUTING_KEY_SENDER)
        failed = all_hold(sender.matchers, event, context)
        if failed is not None:
            raise Forbidden([f"{at or 'event'}: source {sender.name} may not send it: "
                             f"{failed} does not hold"], sender.name)
        return sender
