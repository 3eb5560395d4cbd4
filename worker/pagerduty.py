"""PagerDuty Events API v2 client: every reply mapped to one of three outcomes.

    delivered         2xx                                  -> send() returns
    retry later       429, 408, 5xx, 1xx/3xx, timeout,     -> RetryLater
                      connection or protocol error
    rejected for good 400 and every other 4xx              -> Rejected
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from relay.errors import Rejected, RetryLater

log = logging.getLogger(__name__)

PATHS = {"alert": "/v2/enqueue", "change": "/v2/change/enqueue"}
RETRY_STATUSES = frozenset({408, 429})
MAX_REPLY = 2000


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

    def send(self, kind: str, body: dict[str, Any]) -> str:
        """POST one event; return PagerDuty's reply text when it was accepted."""
        url = self.base_url + PATHS[kind]
        try:
            response = self.session.post(
                url, json=body, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout as exc:
            raise RetryLater(f"timeout: {type(exc).__name__}") from exc
        except requests.ConnectionError as exc:
            raise RetryLater(f"connection error: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise RetryLater(f"request failed: {type(exc).__name__}") from exc
        status = response.status_code
        reply = response.text[:MAX_REPLY]
        if 200 <= status < 300:
            return reply
        if status in RETRY_STATUSES or status >= 500 or status < 200 or 300 <= status < 400:
            after = retry_after(response.headers.get("Retry-After"))
            raise RetryLater(f"HTTP {status}", status, reply, after)
        raise Rejected(f"HTTP {status}", status, reply)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), if valid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
