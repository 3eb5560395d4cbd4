"""A notice: what one channel is told of one event (a job's only argument, as JSON).

The outbox holds ``<slot>\\n<header>\\n<stored event>`` (ENQUEUE, relay/scripts.py); the
header is the ingress's ``{"id", "c": channels or null, "r": route, "s": sender}``.

A notice carries only what channels show of the event (``slim``): the Events API fields a
message or template reads, each cut to a few hundred bytes, at most ``LINKS_MAX`` links,
and ``custom_details`` cut to ``DETAILS_BYTES`` of JSON. The stored event may be ~500 KB
and each channel's RQ job holds its notice (an hour when sent, days when failed): cut so,
a notice is at most ``NOTICE_BYTES`` of JSON whatever the sender sent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from relay.store import Record

FIELD_BYTES = 256  # each short field: source, component, dedup_key, ...
SUMMARY_BYTES = 1100  # PagerDuty keeps 1,024 characters of a summary
URL_BYTES = 384
LINK_TEXT_BYTES = 128
LINKS_MAX = 3
DETAILS_BYTES = 2048  # custom_details, as JSON
DETAIL_BYTES = 512  # any one value in it
NOTICE_BYTES = 8192  # the most a notice's JSON takes (tests/test_channel_job_bytes.py)
SHORT = ("source", "severity", "timestamp", "component", "group", "class")
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


def slim(event: dict[str, Any]) -> dict[str, Any]:
    """What channels show of ``event``, each part cut to its size (the module's doc)."""
    found: dict[str, Any] = {
        name: _value(event[name], URL_BYTES if name == "client_url" else FIELD_BYTES)
        for name in ("event_action", "dedup_key", "client", "client_url") if name in event}
    links = event.get("links")
    if isinstance(links, list):
        found["links"] = [{"href": _value(link.get("href", ""), URL_BYTES),
                           "text": _value(link.get("text", ""), LINK_TEXT_BYTES)}
                          for link in links if isinstance(link, dict)][:LINKS_MAX]
    payload = event.get("payload")
    if isinstance(payload, dict):
        cut = {name: _value(payload[name], FIELD_BYTES) for name in SHORT if name in payload}
        if "summary" in payload:
            cut["summary"] = _value(payload["summary"], SUMMARY_BYTES)
        if "custom_details" in payload:
            cut["custom_details"] = details(payload["custom_details"])
        found["payload"] = cut
    return found


def details(value: Any, limit: int = DETAILS_BYTES) -> Any:
    """``custom_details`` in at most ``limit`` bytes of JSON: a mapping keeps its first
    entries that fit, each value cut to ``DETAIL_BYTES`` (a nested one written as JSON
    text when it is longer), and says what was left out under "…"."""
    if not isinstance(value, dict):
        return _value(value, limit)
    found: dict[str, Any] = {}
    used, room = 2, limit - 64  # {}, and room for the "…" entry
    for key, item in value.items():
        name, cut = fit(str(key), 128), _value(item, DETAIL_BYTES)
        size = len(json.dumps({name: cut})) - 1
        if used + size > room:
            found["…"] = f"{len(value) - len(found)} more entries cut"
            break
        found[name], used = cut, used + size
    return found


def _value(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return fit(value, limit)
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else fit(text, limit)


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
        event = slim(self.record.event)
        summary = fit(summary, SUMMARY_BYTES)
        if summary == payload_of(event).get("summary"):
            summary = ""  # said once, in the event: messages.context reads it there
        return Notice(id=str(self.header["id"]), action=self.action, event=event, key=key,
                      route=str(self.header.get("r", "")), source=str(self.header.get("s", "")),
                      accepted_ms=self.record.accepted_ms, severity=fit(severity, 64),
                      summary=summary)
