"""A heartbeat's page made an event on the ordinary path (``relay.ownevents``, as the
self-check's alarms): stored by ENQUEUE, ordered, within its key's limit, sorted by the
check's severity in storm mode, its channels told through the outbox, and owned by the
relay so no sender can resolve it.

A trigger has dedup_key ``heartbeat:<name>``, the check's severity and summary (default
"Heartbeat <name> is down"; a Watchdog check's "Watchdog silent: ..."), and details: why
(missed, started, fail), the last ping, when one was expected, how late, the last ping's
body (its first KB) and exit status. It goes on the key rendezvous hashing picks among
the check's keys (every key in service when it names neither keys nor channels, or
none of its keys is in the keys file any more), its
channels hear of it from their least severity up; the resolve goes where the trigger
went (ENQUEUE keeps an incident on its key). The story's accepted step says the route
``heartbeat:<name>``, the adapter ``heartbeat`` and, in ``hb``, why it paged or resolved:
``pd-relay trace heartbeat:<name>`` tells it.

A full queue stores nothing and raises ``QueueFull``: the evaluator keeps the page at the
head of its outbox and hands it again at its next round (no later page of the outbox goes
before it), so a page is late, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis

from relay.errors import QueueFull
from relay.heartbeats.model import Check, Page
from relay.history import iso
from relay.names import Names
from relay.owners import Owned
from relay.ownevents import own_event, slot_of, store_own
from relay.routes.channels import hearing
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.store import EventStore, Full

log = logging.getLogger(__name__)
BODY_SHOWN = 1024  # bytes of the last ping's body a page carries
ADAPTER = "heartbeat"  # the accepted step's adapter: where the event came from
REASONS = {"missed": "no ping by its deadline", "started": "started, no success within grace",
           "fail": "a fail ping"}


class Pages:
    """``send`` is the evaluator's sender (``relay.heartbeats.evaluator``)."""

    def __init__(self, client: redis.Redis, names: Names, settings: Settings,
                 routes: RoutesFile) -> None:
        self.settings = settings
        self.store = EventStore(client, names, settings)
        self.least = {c.name: c.min_severity for c in routes.channels}
        self.drained = {name for key, name in zip(settings.routing_keys, settings.key_names,
                                                   strict=False) if key in settings.draining_keys}
        self.in_service = [name for name in settings.key_names if name not in self.drained]

    def send(self, page: Page, check: Check) -> None:
        """Store ``page`` as an event. QueueFull when its key's queue is full (nothing
        stored: hand it again later); redis.RedisError when it may not have been stored
        (hand it again: at worst PagerDuty takes the same event twice, one incident)."""
        event = page_event(page, check)
        # as a route's pool: its keys in service, else (all marked drain, none left in the
        # keys file, or none named and no channels either) every key in service
        named = [k for k in check.keys if k in self.settings.key_names]
        if check.keys and not named:  # a run-time check's keys gone from the keys file since
            log.warning("heartbeat %s: none of its keys (%s) is in the keys file: its %s "
                        "goes on a key in service", check.name, ", ".join(check.keys),
                        page.action)
        pool = [k for k in named if k not in self.drained] or \
            (self.in_service if check.keys or not check.channels else [])
        heard = hearing(check.channels, check.severity, self.least)
        slot = slot_of(self.settings.key_names, pool, check.dedup_key)
        answer = store_own(self.store, self.settings, event, slot, "heartbeat:" + check.name,
                           heard if page.action == "trigger" else None, bool(check.channels),
                           ad=ADAPTER, hb=story(page))
        if isinstance(answer, Full):
            full = "every queue is full" if answer.total else \
                f"the queue of key {self.settings.key_names[abs(answer.slot) - 1]} is full"
            raise QueueFull([f"heartbeat {check.name}: its {page.action} waits: {full}"])
        if isinstance(answer, Owned):  # a sender opened heartbeat:<name> before the relay did
            log.error("heartbeat %s: its %s not sent: its incident belongs to %s",
                      check.name, page.action, answer.owner)
            return
        log.warning("heartbeat %s: %s (%s)", check.name,
                    "down, paged" if page.action == "trigger" else "resolved",
                    story(page))


def page_event(page: Page, check: Check) -> dict[str, Any]:
    """The PagerDuty event of ``page``."""
    if page.action != "trigger":
        return own_event(page.action, check.dedup_key)
    summary = check.summary or (f"Watchdog silent: heartbeat {check.name} is down"
                                if check.watchdog else f"Heartbeat {check.name} is down")
    return own_event("trigger", check.dedup_key, summary[:1024], check.severity, "heartbeat",
                     details(page, check), timestamp=iso(int(page.at * 1000)))


def details(page: Page, check: Check) -> dict[str, Any]:
    """A trigger's custom_details: times in ISO 8601 UTC, the body's first KB."""
    found = page.details
    body = found.get("last_body") or ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return {"check": check.name, "reason": page.reason,
            "last_ping_at": _time(found.get("last_ping_at")),
            "expected_at": _time(found.get("expected_at")),
            "late_by_s": found.get("late_by_s"),
            "last_body": text.encode()[:BODY_SHOWN].decode("utf-8", "ignore"),
            "exit_status": found.get("exit_status")}


def story(page: Page) -> str:
    """Why it paged or resolved, for the accepted step (``hb``) and the log."""
    found: Mapping[str, Any] = page.details
    if page.action != "trigger" and page.reason == "removed":
        return f"the check was removed at {_time(page.at)}"
    if page.action != "trigger":
        return f"up again: a success ping at {_time(found.get('last_ping_at') or page.at)}"
    last = _time(found.get("last_ping_at")) or "none"
    text = f"{REASONS.get(page.reason, page.reason)}: last ping {last}"
    if found.get("expected_at") is not None:
        text += f", expected by {_time(found['expected_at'])}"
    if found.get("exit_status") is not None:
        text += f", exit status {found['exit_status']}"
    return f"{text}; down at {_time(page.at)}"


def _time(value: object) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (a text as it is; None as None)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return iso(int(value * 1000))
    return None if value is None else str(value)
