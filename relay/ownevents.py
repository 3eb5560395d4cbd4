"""The relay's own events: the self-check's alarms (``relay.housekeeping.selfcheck``) and
the heartbeats' pages (``relay.heartbeats.pages``). Each is stored by ENQUEUE as a sender's
event is (stored before it counts as sent, ordered per incident, within its key's limit,
sorted by its severity in storm mode, its channels told through the outbox) with the
start of its story, and its incident is owned by ``RELAY``: no sender may act on it."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from relay.channels.notice import header
from relay.history import accepted, event_id
from relay.keys import choose_key
from relay.owners import RELAY, Owned
from relay.router import Route, incident_id
from relay.routes.sources import RELAY_SENDER
from relay.settings import Settings
from relay.store import EventStore, Full, Record, now_ms


def own_event(action: str, dedup_key: str, summary: str = "", severity: str = "",
              kind: str = "", details: Mapping[str, Any] | None = None,
              **payload: Any) -> dict[str, Any]:
    """A trigger (with its payload: from this host, component pd-relay, class ``kind``)
    or a follow-up (``action`` resolve: no payload)."""
    event: dict[str, Any] = {"event_action": action, "dedup_key": dedup_key}
    if action == "trigger":
        event["payload"] = {"summary": summary, "source": socket.gethostname(),
                            "severity": severity, "component": "pd-relay", "class": kind,
                            **payload, "custom_details": dict(details or {})}
    return event


def slot_of(key_names: Sequence[str], pool: Sequence[str], dedup_key: str) -> int:
    """The place (from 1) in the keys file of the key of ``pool`` (names) that rendezvous
    hashing picks for ``dedup_key``; 0 for an empty pool (channels only)."""
    return key_names.index(choose_key(pool, dedup_key)) + 1 if pool else 0


def store_own(store: EventStore, settings: Settings, event: dict[str, Any], slot: int,
              route: str, channels: Sequence[str] | None, told: bool,
              **story: str) -> int | Full | Owned:
    """Store ``event`` on the key in ``slot`` (negative: that key whatever the store
    remembers of its incident; 0: none), owned by the relay, and tell ``channels`` (a
    trigger's: those that hear of it; None for a follow-up, which goes where its trigger
    went) when ``told`` (the route has channels at all). ``story``: more of the accepted
    step's fields (``relay.history.ACCEPTED``). ENQUEUE's answer: the slot, or ``Full`` or
    ``Owned`` when nothing was stored."""
    action, dedup_key = str(event["event_action"]), str(event["dedup_key"])
    record = Record("alert", event, now_ms(), event_id())
    notice = header(record.id, None if channels is None else list(channels), route,
                    RELAY_SENDER) if told and (channels is None or len(channels) > 0) else b""
    raw = record.encode()
    text = accepted(i=record.id, d=dedup_key, a=action, r=route, s=RELAY_SENDER,
                    n=socket.gethostname(), **story, p=raw if settings.history_dsn else "",
                    ) if settings.history_max_entries else b""
    item = (Route(slot, incident_id(dedup_key), action, route), raw, notice, text, RELAY)
    return store.enqueue([[item]])[0]
