"""Routing: which configured key an event travels on.

An event that names a routing key keeps it (it must be configured). Any other event
goes to the key that rendezvous hashing picks for its dedup_key among the keys not
marked ``drain``. That pick is only a proposal for alert events: the event store keeps,
per key, the incidents last routed to it, and an incident it remembers stays on its key
(``relay/scripts.py`` ENQUEUE), so adding or draining keys never moves an open incident.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any, NamedTuple

from relay.keys import choose_key, is_ruleset, mask


def mint_id() -> str:
    """A random 128-bit id in hex, for a dedup_key PagerDuty would otherwise mint.

    Not uuid4: it reads os.urandom, a system call that lets go of the GIL, and under
    load each such hand-over costs the ingress more than the rest of the event's
    checks (docs/BENCHMARKS.md). ``random`` is seeded from os.urandom per process.
    """
    return f"{random.getrandbits(128):032x}"


def incident_id(dedup_key: str) -> str:
    """A short digest of a dedup_key: how the event store names an incident."""
    return hashlib.blake2b(dedup_key.encode(), digest_size=12).hexdigest()


class Route(NamedTuple):
    """Where an event goes: ``slot`` is its key's place in the keys file counting from 1,
    negative when the event named the key itself (then it is kept whatever the store
    remembers); ``incident`` is the incident's id ("" for change events)."""

    slot: int
    incident: str
    action: str  # event_action; "fresh" for a trigger whose dedup_key was minted here


class Router:
    def __init__(self, keys: Sequence[str], draining: frozenset[str] = frozenset()) -> None:
        self.keys = tuple(keys)
        self.slots = {key: n for n, key in enumerate(self.keys, start=1)}
        self.active = tuple(k for k in self.keys if k not in draining)
        self.change_keys = tuple(k for k in self.active if not is_ruleset(k))

    def route(self, kind: str, event: dict[str, Any], at: str) -> Route | str:
        """Return the event's route, or the problem that keeps it from having one.
        Takes ``routing_key`` out of the event and mints a dedup_key for a trigger."""
        named = event.pop("routing_key", None)
        minted = kind == "alert" and event.get("dedup_key") is None
        if minted:
            event["dedup_key"] = mint_id()
        if named is not None:
            if named not in self.slots:
                return f"{at}routing_key {mask(named)} is not a configured routing key"
            if kind == "change" and is_ruleset(named):
                return (f"{at}routing_key {mask(named)} is a ruleset key; "
                        "PagerDuty takes no change events on ruleset keys")
            key, slot_sign = named, -1
        elif kind == "change":
            if not self.change_keys:
                return (f"{at}routing_key is missing and every configured key is a ruleset "
                        "key, which takes no change events")
            key, slot_sign = choose_key(self.change_keys, mint_id()), 1
        else:
            key, slot_sign = choose_key(self.active, event["dedup_key"]), 1
        if kind == "change":
            return Route(slot_sign * self.slots[key], "", "change")
        action = "fresh" if minted else str(event["event_action"])
        return Route(slot_sign * self.slots[key], incident_id(event["dedup_key"]), action)
