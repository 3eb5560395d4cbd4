"""What every sender shares: the secrets of a channel that must never be stored, and an
HTTP request's answer made one outcome (the table in ``relay.channels.senders``).

RQ stores a failed job's traceback in Redis, chained exceptions included, and requests'
and urllib3's exceptions name the URL (a Slack or Teams webhook's URL is its secret). So
every exception raised here is made anew ``from None`` (no chain) and says only the
error's type, and a reply is stored with the channel's secrets (``secrets``) masked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from relay.errors import Rejected, RetryLater
from relay.http import retry_after
from relay.routes.channel_types import DEFAULT_URLS
from relay.routes.channels import Channel

MAX_REPLY = 500
MASK = "***"


def secrets(channel: Channel) -> list[str]:
    """What of ``channel`` must never be stored: its URL and each part of it that may be
    a secret (user info, path, query, long path segments), its token, password, key,
    account (a Twilio SID, a Signal number) and header values; longest first."""
    found = {channel.token, channel.password, channel.user, channel.account,
             channel.service, *(v for _, v in channel.headers)}
    try:
        parts = urlsplit(channel.url)
        found |= {parts.query, parts.fragment, parts.netloc.rpartition("@")[0]}
        if channel.url != DEFAULT_URLS.get(channel.type):  # a provider's own API URL
            # names no one; any other URL may be the secret (a webhook's path, a topic)
            found |= {channel.url, parts.path}
            found |= {segment for segment in re.split(r"[/?&=#;]", channel.url)[3:]
                      if len(segment) >= 8}
    except ValueError:
        found.add(channel.url)
    return sorted((s for s in found if len(s) >= 4 and s != "/"), key=len, reverse=True)


def masked(channel: Channel, text: str) -> str:
    """``text`` (a channel's reply, an error) with the channel's secrets masked, cut."""
    for secret in secrets(channel):
        text = text.replace(secret, MASK)
    return text[:MAX_REPLY]


def request(channel: Channel, session: requests.Session, url: str,
            **kwargs: Any) -> requests.Response:
    """``session.request`` with a request's failure made RetryLater or Rejected."""
    try:
        return session.request(kwargs.pop("method", "POST"), url,
                               timeout=(min(5.0, channel.timeout_s), channel.timeout_s),
                               allow_redirects=False, **kwargs)
    except requests.Timeout as exc:  # requests' message names the URL: never chained
        raise RetryLater(f"timeout: {type(exc).__name__}") from None
    except requests.ConnectionError as exc:
        raise RetryLater(f"connection error: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        raise Rejected(f"request failed: {type(exc).__name__}") from None


Hint = Callable[[requests.Response], float | None]


def answer(channel: Channel, response: requests.Response, hint: Hint | None = None) -> str:
    """The reply of a 2xx; else RetryLater (408, 429, 5xx: with Retry-After, or what
    ``hint`` reads of the body) or Rejected."""
    status = response.status_code
    reply = masked(channel, response.text[:MAX_REPLY + len(channel.url) + 200])
    if 200 <= status < 300:
        return reply
    if status in (408, 429) or status >= 500:
        after = retry_after(response.headers.get("Retry-After"))
        if after is None and hint is not None:
            after = hint(response)
        raise RetryLater(f"HTTP {status}", status, reply, after)
    raise Rejected(f"HTTP {status}", status, reply)


def json_of(response: requests.Response) -> dict[str, Any]:
    """The body as a JSON object ({} when it is none)."""
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def seconds(value: Any) -> float | None:
    """A retry hint's seconds, when it is a number from 0 to a day."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 86400
    return float(value) if ok else None
