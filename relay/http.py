"""What HTTP replies say, read the same way for PagerDuty and for the channels."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

Networks = tuple[IPv4Network | IPv6Network, ...]
UNIX_PEER = "localhost"  # waitress's REMOTE_ADDR for a request over its Unix socket


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


def loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) can only be this machine: ``localhost``
    or a loopback address ("" and other names: no)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def networks(raw: str) -> Networks:
    """Networks or addresses, separated by commas or spaces (RELAY_TRUSTED_PROXIES,
    RELAY_ADMIN_ALLOW); ValueError naming every one that is not."""
    found, bad = [], []
    for word in raw.replace(",", " ").split():
        try:
            found.append(ip_network(word, strict=False))
        except ValueError:
            bad.append(word)
    if bad:
        raise ValueError(f"not a network or address: {', '.join(bad)} (want e.g. "
                         "10.0.0.0/8 or 192.0.2.7, separated by commas)")
    return tuple(found)


def within(address: str, allowed: Networks) -> bool:
    """Whether ``address`` (an IP address; anything else is not) is in one of ``allowed``."""
    try:
        found = ip_address(address)
    except ValueError:
        return False
    if found.version == 6 and found.ipv4_mapped is not None:
        found = found.ipv4_mapped
    return any(found in network for network in allowed)


def from_proxy(remote_addr: str | None, trusted: Networks) -> bool:
    """Whether the peer is our nginx (over the ingress's Unix socket, which only the
    stack's user may reach) or a proxy the operator trusts (RELAY_TRUSTED_PROXIES): only
    then are its X-Forwarded-For and X-Forwarded-Proto believed."""
    return remote_addr == UNIX_PEER or within(remote_addr or "", trusted)


def client_address(remote_addr: str | None, forwarded_for: str, trusted: Networks = ()) -> str:
    """Who is asking: the peer, or behind our nginx (``from_proxy``) the address it
    appended last to X-Forwarded-For (what a client wrote there itself comes before).
    From anyone else X-Forwarded-For is ignored: a local user posting straight to an
    ingress port cannot forge its address."""
    client = remote_addr or "-"
    if forwarded_for and from_proxy(remote_addr, trusted):
        client = forwarded_for.rsplit(",", 1)[-1].strip() or client
    return client
