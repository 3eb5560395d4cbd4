"""A notice: what one channel is told of one event (a job's only argument, as JSON).

The outbox holds ``<slot>\\n<header>\\n<stored event>`` (ENQUEUE, relay/scripts.py); the
header is the ingress's ``{"id", "c": channels or null, "r": route, "s": sender}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from relay.store import Record

STATES = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved",
          "change": "change"}


def header(event_id: str, channels: list[str] | None, route: str, sender: str) -> bytes:
    """An outbox entry's header, as the ingress (and the self-check) hand it to ENQUEUE:
    ``channels`` None for a follow-up, which goes where its trigger went."""
    return json.dumps({"id": event_id, "c": channels, "r": route, "s": sender},
                      separators=(",", ":")).encode()


def fit(text: str, limit: int) -> str:
    """``text`` cut (with "…") so that it takes at most ``limit`` bytes as JSON (RQ's and
    the relay's JSON escape every non-ASCII character: up to 12 bytes each)."""
    if len(json.dumps(text)) <= limit:
        return text
    text = text[:limit]
    while len(json.dumps(text + "…")) > limit and text:
        excess = len(json.dumps(text + "…")) - limit
        text = text[:len(text) - max(1, excess // 12)]
    return text + "…"


def payload_of(event: dict[str, Any]) -> dict[str, Any]:
    """An alert's payload ({} for a follow-up or change event without one)."""
    payload = event.get("payload")
    return payload if isinstance(payload, dict) else {}


@dataclass(frozen=True)
class Notice:
    id: str
    action: str  # trigger, acknowledge, resolve or change
    event: dict[str, Any]
    key: str = ""  # the PagerDuty key's name; "" when only channels hear of the event
    route: str = ""
    source: str = ""
    accepted_ms: int = 0
    severity: str = "info"  # the event's, or for a follow-up its trigger's
    summary: str = ""  # the event's, or for a follow-up its trigger's
    test: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return STATES.get(self.action, self.action)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        return cls(**data)


@dataclass(frozen=True)
class Entry:
    """One outbox entry, read: the key's slot (0: none), the header, the event."""

    slot: int
    header: dict[str, Any]
    record: Record

    @classmethod
    def parse(cls, raw: str) -> Entry:
        """ValueError (or KeyError, TypeError) when ``raw`` is not an outbox entry."""
        slot, header, event = raw.split("\n", 2)
        found = json.loads(header)
        if not isinstance(found, dict) or not isinstance(found.get("id"), str):
            raise ValueError("not an outbox header")
        return cls(int(slot), found, Record.decode(event))

    @property
    def action(self) -> str:
        return "change" if self.record.kind == "change" else self.record.action

    def notice(self, key: str, severity: str, summary: str) -> Notice:
        return Notice(id=str(self.header["id"]), action=self.action, event=self.record.event,
                      key=key, route=str(self.header.get("r", "")),
                      source=str(self.header.get("s", "")),
                      accepted_ms=self.record.accepted_ms, severity=severity, summary=summary)
