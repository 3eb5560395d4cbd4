"""One history stream entry read as the steps it holds: the one meaning of the stream's
format (``relay.history``) for whoever reads it whole (the PostgreSQL exporter, the reader
of the stream's tail). ``relay.history.search`` reads the same format faster, filtering
text before parsing; ``tests/test_history_entries.py`` holds the two to the same answers.

An entry ``{s: accepted, v}`` holds the accepted steps of every event one ENQUEUE stored
(``<slot>US<values of ACCEPTED>`` joined by RS); any other entry ``{s: step, k: slot, x:
JSON}`` one worker's step of one event. Each step is named by its entry's id and its
place in it (``n``): the exporter's idempotence key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from relay.history import ACCEPTED, RS, US


@dataclass(frozen=True)
class Step:
    entry: str  # the stream entry's id, "<ms>-<seq>"
    n: int  # its place in the entry (0 for a worker's step)
    step: str  # accepted, attempt, delivered, dead, coalesced, ... (relay.history.story)
    event_id: str  # "i"
    dedup_key: str  # "d"
    slot: int  # the key's slot (negative: remembered by its incident; 0: none)
    at_ms: int  # when written: the entry id's time
    fields: dict[str, Any] = field(default_factory=dict)  # the rest, short names
    # (relay.history.story.READABLE); an accepted step's "p" is the event as stored

    @property
    def payload(self) -> dict[str, Any] | None:
        """An accepted step's event as stored (``relay.store.Record.encode``'s object),
        when the entry carries it (RELAY_HISTORY_DSN set on the ingress that wrote it)."""
        raw = self.fields.get("p")
        if not raw:
            return None
        try:
            found = json.loads(raw)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None


def steps_of(entry_id: str, fields: dict[str, str]) -> list[Step]:
    """The steps in one entry (``fields`` decoded to str); [] for one not understood
    (a later release's kind of entry, or a damaged one: never an error)."""
    at_ms = int(entry_id.split("-")[0])
    kind = fields.get("s", "")
    if kind == "accepted" and "v" in fields:
        found = []
        for n, part in enumerate(fields["v"].split(RS)):
            slot, _, values = part.partition(US)
            data: dict[str, Any] = dict(zip(ACCEPTED, values.split(US), strict=False))
            event_id, dedup_key = str(data.pop("i", "")), str(data.pop("d", ""))
            if not event_id:
                continue
            found.append(Step(entry_id, n, "accepted", event_id, dedup_key,
                              _int(slot), at_ms, data))
        return found
    try:
        data = json.loads(fields.get("x") or "")
    except ValueError:
        return []
    if not isinstance(data, dict) or not data.get("i"):
        return []
    event_id, dedup_key = str(data.pop("i")), str(data.pop("d", ""))
    return [Step(entry_id, 0, kind, event_id, dedup_key, _int(fields.get("k")), at_ms, data)]


def _int(raw: Any) -> int:
    try:
        return int(raw or 0)
    except (TypeError, ValueError):
        return 0
