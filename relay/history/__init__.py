"""Each event's story: accepted (when, on which node, from which source, by which route,
to which key), each attempt to send it (outcome, PagerDuty's status and the start of its
reply, the wait before the next), and its end (delivered, dead-lettered).

One Redis stream (``Names.history``) holds every step as ``{s: step, k: slot, x: JSON}``;
the JSON always carries the event's id (``i``) and dedup_key (``d``). ENQUEUE adds the
"accepted" steps of all the events it stores in one entry ``{s: accepted, v}``: for each
event its slot and the values of ``ACCEPTED`` joined by US (0x1f), the events joined by
RS (0x1e). One XADD per call rather than per event, and no field names repeated. The
worker adds the other steps.
The stream is capped by entries (``RELAY_HISTORY_MAX_ENTRIES``, approximately: ``MAXLEN
~``) and by bytes (``RELAY_HISTORY_MAX_MB``, ``relay.history.cap``), and trimmed to
``RELAY_HISTORY_DAYS`` by the housekeeping.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis

from relay.history.cap import NOTE
from relay.history.loss import TRIM_AGE
from relay.ids import token
from relay.names import Names
from relay.settings import Settings

log = logging.getLogger(__name__)


def iso(ms: int) -> str:
    """A time (ms since the epoch) as the API, the stories and merged events say it: ISO
    8601 UTC to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event_id() -> str:
    """An unpredictable 64-bit id in hex (``relay.ids``): an event's name in its story
    and its channels' jobs."""
    return token(8)


ACCEPTED = ("i", "d", "a", "r", "s", "n", "ad", "c", "h", "hb", "p")  # id, dedup_key,
# action, route, source, node, adapter, client, how the ingress held it back ("" when
# queued), why a heartbeat paged or resolved (relay.heartbeats.pages; "" for the rest), and
# the event as stored (``relay.store.Record.encode``: its payload, never a routing key),
# written only when PostgreSQL keeps the record (RELAY_HISTORY_DSN: relay.history.pg). A
# new field goes last: a reader zips what it knows (an older entry has fewer, a newer more)
US, RS = "\x1f", "\x1e"


def accepted(**fields: Any) -> bytes:
    """An accepted step's ``v``: the values of ``ACCEPTED``, in order, the empty ones at
    the end left out."""
    values = [str(fields.get(name, "")).replace(US, " ").replace(RS, " ") for name in ACCEPTED]
    while values and not values[-1]:
        values.pop()
    return US.join(values).encode()


def line(**fields: Any) -> bytes:
    """A step's JSON, compact."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


class History:
    def __init__(self, client: redis.Redis, names: Names, settings: Settings) -> None:
        self.client = client
        self.name = names.history
        self.ledger = names.history_ledger
        self.max_entries = settings.history_max_entries
        self.max_bytes = settings.history_max_bytes
        self.script: Any = client.register_script(NOTE)
        self.trim_age: Any = client.register_script(TRIM_AGE)

    def note(self, step: str, slot: int, **fields: Any) -> str:
        """Add a step (``fields`` must hold the event's ``i`` and ``d``), within the
        stream's caps; return its entry's id ("": no history)."""
        if self.max_entries <= 0:
            return ""
        found = self.script(keys=[self.name, self.ledger],
                    args=[self.max_entries, self.max_bytes, "s", step, "k", slot,
                          "x", line(**fields)])
        return found.decode() if isinstance(found, bytes) else str(found)

    def trim(self, before_ms: int) -> int:
        """Forget the steps older than ``before_ms``; return how many went (those no
        exporter was delivered counted lost: relay.history.loss)."""
        return int(self.trim_age(keys=[self.name], args=[int(before_ms)]))

