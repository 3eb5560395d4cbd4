"""Routing: which configured key an event travels on.

An event that names a routing key keeps it (it must be configured). Any other event
goes to the key that rendezvous hashing picks for its dedup_key, so one incident's
trigger, acknowledge and resolve always share one key and one ordered queue.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from relay.keys import choose_key, is_ruleset, key_id, mask


def mint_id() -> str:
    """A random 128-bit id in hex, for a dedup_key PagerDuty would otherwise mint.

    Not uuid4: it reads os.urandom, a system call that lets go of the GIL, and under
    load each such hand-over costs the ingress more than the rest of the event's
    checks (docs/BENCHMARKS.md). ``random`` is seeded from os.urandom per process.
    """
    return f"{random.getrandbits(128):032x}"


class Router:
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self.known = frozenset(self.keys)
        self.change_keys = tuple(k for k in self.keys if not is_ruleset(k))
        self.ids = {k: key_id(k) for k in self.keys}

    def route(self, kind: str, event: dict[str, Any], at: str) -> tuple[str | None, str]:
        """Return (routing key, "") or (None, problem). Mints a dedup_key for triggers."""
        named = event.pop("routing_key", None)
        if kind == "alert" and event.get("dedup_key") is None:
            event["dedup_key"] = mint_id()
        if named is not None:
            if named not in self.known:
                return None, f"{at}routing_key {mask(named)} is not a configured routing key"
            if kind == "change" and is_ruleset(named):
                return None, (
                    f"{at}routing_key {mask(named)} is a ruleset key; "
                    "PagerDuty takes no change events on ruleset keys"
                )
            return named, ""
        if kind == "change":
            if not self.change_keys:
                return None, (
                    f"{at}routing_key is missing and every configured key is a ruleset key, "
                    "which takes no change events"
                )
            return choose_key(self.change_keys, mint_id()), ""
        return choose_key(self.keys, event["dedup_key"]), ""
