"""What the routes file lets a source do beyond sending (issue 23): act on other senders'
incidents (``follow_up: any``), and page only by some routes (``routes: [...]``); and
the names a source may not take.

    sources:
      - name: payments-ci
        api_keys: [sha256:...]
        match: ['custom_details.service="payments"']   # what it may trigger
        routes: [payments]                              # and by which routes
      - name: incident-bot
        api_keys: [sha256:...]
        follow_up: any            # acknowledges and resolves others' incidents on purpose
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# What the relay calls senders that are not sources (relay.auth, the self-alerts): a
# source so named would be taken for one of them (an anonymous sender owns nothing)
ANONYMOUS, ROUTING_KEY_SENDER, UNKNOWN_API_KEY = "anonymous", "routing-key", "unknown-api-key"
RELAY_SENDER = "pd-relay"  # the relay's own alarms (relay.housekeeping.selfcheck)
SENDER_WORDS = (ANONYMOUS, ROUTING_KEY_SENDER, RELAY_SENDER, UNKNOWN_API_KEY)
FIELDS = {"name", "api_keys", "match", "channels", "follow_up", "routes"}


def grants(at: str, entry: dict[str, Any], name: str | None,
           problem: Callable[[str, str], None]) -> tuple[bool, tuple[str, ...] | None]:
    """A source entry's ``follow_up: any`` and ``routes`` (None: any route), checked
    (problems noted; the route names against the file's routes by its checker)."""
    follow_up = entry.get("follow_up", "own")
    if follow_up not in ("own", "any"):
        problem(f"{at}.follow_up", "want own (only incidents it opened: the default) or any "
                "(acknowledge, resolve and re-trigger any sender's)")
    routes = entry.get("routes")
    if routes is not None and (not isinstance(routes, list) or not routes
                               or not all(isinstance(r, str) for r in routes)):
        problem(f"{at}.routes", "want a list of route names")
        routes = None
    if name in SENDER_WORDS:
        problem(f"{at}.name", f"{name!r} names senders that are not sources; choose "
                "another name")
    return follow_up == "any", None if routes is None else tuple(routes)
