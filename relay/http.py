"""What HTTP replies say, read the same way for PagerDuty and for the channels."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


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


LOOPBACK = ("127.", "::1", "::ffff:127.")


def client_address(remote_addr: str | None, forwarded_for: str) -> str:
    """Who is asking: the peer, or behind our nginx on loopback the address it appended
    last to X-Forwarded-For (what a client wrote there itself comes before)."""
    client = remote_addr or "-"
    if forwarded_for and client in ("127.0.0.1", "::1"):
        client = forwarded_for.rsplit(",", 1)[-1].strip()
    return client


def is_loopback(address: str) -> bool:
    return address.startswith(LOOPBACK)
