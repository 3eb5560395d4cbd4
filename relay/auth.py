"""Who may send: API keys of the routes file's sources, the operator's routing keys, or
anyone when the operator allows anonymous senders.

A request's API key comes from ``X-API-Key`` or ``Authorization: Bearer``; only its
SHA-256 is kept (``pd-relay token new`` prints a key once, with its hash). Without one,
each event must carry one of the relay's routing keys, as PagerDuty itself demands, so
PagerDuty receivers work unchanged. An unknown API key, or neither, is a 401; an event a
source's matchers do not allow, a 403.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from relay.errors import Forbidden, Unauthorized
from relay.routes.channels import Use
from relay.routes.config import Source
from relay.routes.matchers import Matcher, all_hold

ROUTING_KEY_SENDER = "routing-key"
ANONYMOUS = "anonymous"


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


def request_token(api_key: str | None, authorization: str | None) -> str | None:
    """The API key of a request's ``X-API-Key`` or ``Authorization: Bearer`` header."""
    if api_key:
        return api_key.strip()
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class Gate:
    def __init__(self, sources: tuple[Source, ...], allow_anonymous: bool) -> None:
        self.by_hash = {h: source for source in sources for h in source.key_hashes}
        self.allow_anonymous = allow_anonymous

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
                                "Authorization: Bearer)"], "unknown-api-key")
        return Sender(source.name, source.matchers, source.channels)

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
