"""An event's story as read back from the history (``relay.history.search`` finds
them): its steps in order, its state, and the shape the API and ``trace --json`` give."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from relay.history import iso

ENDS = ("delivered", "dead", "coalesced")  # coalesced: merged into a newer repeat
READABLE = {  # a step's short field names, as the API and `trace --json` say them
    "a": "action", "r": "route", "s": "source", "n": "node", "ad": "adapter", "c": "client",
    "h": "held", "o": "outcome", "e": "error", "st": "status", "w": "next_in_s",
    "dl": "dead_letter", "k": "key", "into": "coalesced_into", "hb": "heartbeat",
}
STATES = ("queued", "retrying", "delivered", "dead", "coalesced", "dropped", "suppressed",
          "channels-only", "held")


@dataclass
class Story:
    id: str
    dedup_key: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    known: dict[str, Any] = field(default_factory=dict)  # what the record in PostgreSQL
    # knows of its event (severity, summary, payload_source) when its payload is not here

    def facts(self, key_names: tuple[str, ...]) -> dict[str, Any]:
        """What the filters beyond the steps look at: its key's name, and its payload's
        severity, summary and source (from its accepted step's stored event "p", written
        only when PostgreSQL keeps the record; else what the record knows)."""
        first = self.accepted
        found: dict[str, Any] = {"key": key_name(key_names, int(first.get("slot") or 0))
                                 if first else None}
        found.update(_payload_facts(str(first["p"])) if first.get("p") else self.known)
        return found

    @property
    def end(self) -> str:
        """delivered, dead, coalesced, dropped, suppressed, channels-only, held, or ""
        while under way (held: an acknowledge or resolve held with its held-back trigger;
        coalesced: a waiting repeat merged into a newer trigger, whose id it names)."""
        for step in reversed(self.steps):
            if step["step"] in ENDS:
                return str(step["step"])
        first = self.steps[0] if self.steps else {}
        if first.get("step") == "accepted" and not first.get("slot"):
            return str(first.get("h") or "held")
        return ""

    @property
    def state(self) -> str:
        """The end, or queued (no attempt yet) or retrying while under way."""
        return self.end or ("retrying" if any(s["step"] == "attempt" for s in self.steps)
                            else "queued")

    @property
    def accepted(self) -> dict[str, Any]:
        first = self.steps[0] if self.steps else {}
        return first if first.get("step") == "accepted" else {}

    def as_json(self, key_names: tuple[str, ...]) -> dict[str, Any]:
        """The story as the API answers it: readable names, times in ISO 8601 UTC, the
        key by its name."""
        first = self.accepted
        steps = []
        for step in self.steps:
            shown: dict[str, Any] = {"step": step["step"], "at": iso(step["at_ms"])}
            for name, value in step.items():
                if name == "r" and step["step"] != "accepted":
                    shown["reply"] = value
                elif name in READABLE and value not in ("", None):
                    shown[READABLE[name]] = value
            if step["step"] == "accepted":
                shown["key"] = key_name(key_names, int(step.get("slot") or 0))
            steps.append(shown)
        facts = self.facts(key_names)
        return {"id": self.id, "dedup_key": self.dedup_key, "action": first.get("a"),
                "state": self.state, "accepted_at": steps[0]["at"] if first else None,
                "key": steps[0].get("key") if first else None, "route": first.get("r"),
                "source": first.get("s"), "severity": facts.get("severity"),
                "summary": facts.get("summary"), "payload_source": facts.get("payload_source"),
                "steps": steps}


def _payload_facts(raw: str) -> dict[str, Any]:
    """Severity, summary and source of a stored event (``relay.store.Record.encode``)."""
    try:
        event = json.loads(raw).get("e") or {}
        payload = event.get("payload") or {}
    except (ValueError, AttributeError):
        return {}
    if not isinstance(payload, dict):
        return {}
    return {"severity": payload.get("severity"), "summary": payload.get("summary"),
            "payload_source": payload.get("source")}


def key_name(key_names: tuple[str, ...], slot: int) -> str | None:
    """The name of the key in ``slot`` (None: held back, slot 0)."""
    if not slot:
        return None
    n = abs(slot)
    return key_names[n - 1] if n <= len(key_names) and key_names[n - 1] else f"key-{n}"
