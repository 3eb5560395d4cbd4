"""A channel's breaker as stored (``Names.breaker``, format ``VERSION``: the fields are in
relay.channels.breaker's docstring) and as shown: ``channels status``, the dashboard,
/metrics and the self-check read it with ``state_of``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.routes.channels import Breaker

VERSION = 1  # of the hash's fields
BUCKETS = 10  # the window's fixed buckets


@dataclass(frozen=True)
class State:
    """A breaker as ``pd-relay channels status``, the dashboard, /metrics and the
    self-check show it."""

    state: str = "closed"
    since_ms: int = 0  # opened (open); last closed (closed; 0: never opened)
    probe_at_ms: int = 0
    run: int = 0  # failed sends in a row
    sends: int = 0  # in the window
    failures: int = 0  # in the window
    opened: int = 0  # times it opened
    probes: int = 0
    held: int = 0  # messages held since it opened

    @property
    def open(self) -> bool:
        return self.state == "open"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "since_ms": self.since_ms, "probe_at_ms": self.probe_at_ms,
                "in_a_row": self.run, "window_sends": self.sends,
                "window_failures": self.failures, "opened": self.opened,
                "probes": self.probes, "held": self.held}


def state_of(raw: dict[Any, Any], now_ms: int, settings: Breaker) -> State:
    """A breaker's hash (as HGETALL returns it, bytes or str) read at ``now_ms``."""
    found = {(k.decode() if isinstance(k, bytes) else str(k)):
             (v.decode() if isinstance(v, bytes) else str(v)) for k, v in raw.items()}
    if found.get("v", str(VERSION)) != str(VERSION):
        return State()

    def number(name: str) -> int:
        try:
            return int(float(found.get(name, 0)))
        except ValueError:
            return 0

    width = max(1, math.ceil(max(1, int(settings.window_s * 1000)) / BUCKETS))
    epoch = now_ms // width
    sends = fails = 0
    for i in range(BUCKETS):
        if number(f"e{i}") > epoch - BUCKETS and f"e{i}" in found:
            sends += number(f"s{i}")
            fails += number(f"f{i}")
    return State(state=found.get("state", "closed"), since_ms=number("since"),
                 probe_at_ms=number("probe_at"), run=number("run"), sends=sends,
                 failures=fails, opened=number("opened"), probes=number("probes"),
                 held=number("held"))


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def breaker_line(breaker: dict[str, Any]) -> str:
    """"breaker open since T, next probe at T; N message(s) held" (open breakers)."""
    return (f"breaker open since {utc(breaker['since_ms'])}, next probe at "
            f"{utc(breaker['probe_at_ms'])}; {breaker['held']} message(s) held, sent as a "
            f"digest once a probe is taken (opened {breaker['opened']} time(s), "
            f"{breaker['probes']} probe(s))")
