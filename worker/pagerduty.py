"""PagerDuty Events API v2 client: every reply mapped to one outcome, as pdagent does.

    delivered         2xx                                  -> send() returns
    retry later       408, 429, 5xx, 1xx, timeout,         -> RetryLater
                      connection or protocol error
    invalid event     400, 413 (PagerDuty's "invalid        -> Rejected: dead-letter it
                      event" and "too large")
    key blocked       any other 4xx (401, 403, 404, 405,    -> KeyBlocked: the relay or a
                      407, ...), a redirect, a URL requests     proxy is misconfigured; keep
                      cannot use                                the event, retry slowly
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests

from relay.errors import KeyBlocked, Rejected, RetryLater
from relay.http import retry_after
from relay.settings import Settings

log = logging.getLogger(__name__)

PATHS = {"alert": "/v2/enqueue", "change": "/v2/change/enqueue"}
RETRY_STATUSES = frozenset({408, 429})
INVALID_STATUSES = frozenset({400, 413})
MAX_REPLY = 2000
MAX_POOL = 1000  # connections kept per host by the session a process's keys share
CHECK_URL = "check RELAY_PD_URL: PagerDuty's base URL, such as https://events.pagerduty.com"
HINTS = {
    401: "PagerDuty (or a proxy) refused the credentials: check the routing key and any proxy",
    403: "PagerDuty (or a proxy) forbids the request: check the routing key and any proxy",
    404: CHECK_URL,
    405: CHECK_URL,
    407: "a proxy asks for authentication: check HTTPS_PROXY / HTTP_PROXY and its credentials",
}


class PagerDuty:
    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = (connect_timeout_s, read_timeout_s)

    def send(self, kind: str, body: bytes) -> str:
        """POST one event (its JSON, UTF-8); return PagerDuty's reply text when accepted."""
        url = self.base_url + PATHS[kind]
        try:
            response = self.session.post(
                url, data=body, headers={"Content-Type": "application/json"},
                timeout=self.timeout, allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise RetryLater(f"timeout: {type(exc).__name__}") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader) as exc:
            raise KeyBlocked(f"unusable URL: {type(exc).__name__}", hint=CHECK_URL) from exc
        except requests.ConnectionError as exc:
            raise RetryLater(f"connection error: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise RetryLater(f"request failed: {type(exc).__name__}") from exc
        status = response.status_code
        reply = response.text[:MAX_REPLY]
        if 200 <= status < 300:
            return reply
        if status in RETRY_STATUSES or status >= 500 or status < 200:
            after = retry_after(response.headers.get("Retry-After"))
            raise RetryLater(f"HTTP {status}", status, reply, after)
        if status in INVALID_STATUSES:
            raise Rejected(f"HTTP {status}", status, reply)
        if 300 <= status < 400:
            where = response.headers.get("Location", "elsewhere")
            hint = f"{CHECK_URL} (it redirects to {where[:200]})"
        else:
            hint = HINTS.get(status, f"{CHECK_URL}, and any proxy between the relay and it")
        raise KeyBlocked(f"HTTP {status}", status, reply, hint)


def shared_pagerduty(settings: Settings) -> PagerDuty:
    """One HTTP session for every key's sends, its pool of ``MAX_POOL`` connections so
    concurrent sends reuse connections (urllib3's pool is thread-safe), also those of
    keys added by SIGHUP: a pool keeps only the connections once open at the same time,
    so a large one costs nothing while few keys send (sized to the keys at start, keys
    added later opened and dropped a connection a send, and logged a warning each).
    The environment's proxies and CA bundle are read once, here: requests would read
    them on every send (14% of a send's CPU, measured)."""
    session = requests.Session()
    found = session.merge_environment_settings(f"{settings.pd_url.rstrip('/')}/v2/enqueue",
                                               {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=MAX_POOL)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return PagerDuty(settings.pd_url, session=session,
                     connect_timeout_s=settings.connect_timeout_s,
                     read_timeout_s=settings.read_timeout_s)


def encode_body(event: dict[str, Any], routing_key: str) -> bytes:
    """The request body for one stored event: compact UTF-8 JSON, as the ingress stored
    it. ValueError or UnicodeEncodeError when the event cannot be sent as JSON (nested
    deeper than the encoder goes included)."""
    try:
        text = json.dumps(dict(event, routing_key=routing_key), separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise ValueError("nested too deeply to encode") from None
    return text.encode()
