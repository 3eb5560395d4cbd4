"""Routing: which configured key an event travels on, or whether it is held back.

An event that names a routing key keeps it (it must be configured). A trigger or change
event goes by the first route of the routes file whose matchers all hold: to the key
that rendezvous hashing picks for its dedup_key in the route's pool (keys marked
``drain`` left out), or nowhere when the route drops it or a maintenance window holds
it (slot 0). Without a matching route, the pool is every key. An acknowledge or resolve
carries no payload to match: it is proposed the hash's key, and the event store sends it
where its trigger went, or holds it with its held trigger (``relay/scripts.py`` ENQUEUE),
so adding or draining keys never moves an open incident.

A route whose timing (``mute_time_intervals``, ``active_time_intervals``: quiet hours,
relay.routes.intervals) mutes it at the event's accept time sends its triggers and change
events below its ``muted_min_severity`` to its ``night_keys`` (rendezvous as usual), or,
with none, suppresses them as a maintenance window does (slot 0, rule ``muted:ROUTE``);
those at or above it go as usual. Only triggers and change events are decided so: an
acknowledge or resolve follows its trigger. The route's channels are not muted by the
route's timing: each has its own (the channel's and its use's, relay.channels).

The first matching route also names the channels that hear of a trigger or change event
(``relay.routes.channels``), those whose least severity it reaches, even when the event
named its key; a route with channels and no keys sends to them alone (slot 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from relay.ids import token
from relay.keys import choose_key, is_ruleset, mask
from relay.routes.channels import Channel, Use, hearing
from relay.routes.config import Route as Rule
from relay.routes.config import Window
from relay.routes.intervals import TimeInterval, muted
from relay.routes.matchers import all_hold
from relay.severity import LEVELS

DEFAULT = "default"


def mint_id() -> str:
    """An unpredictable 128-bit id in hex (``relay.ids``), for a dedup_key PagerDuty
    would otherwise mint."""
    return token(16)


def incident_id(dedup_key: str) -> str:
    """A short digest of a dedup_key: how the event store names an incident."""
    return hashlib.blake2b(dedup_key.encode(), digest_size=12).hexdigest()


class Route(NamedTuple):
    """Where an event goes: ``slot`` is its key's place in the keys file counting from 1,
    negative when the event named the key itself (then it is kept whatever the store
    remembers), 0 when it is held back (dropped or suppressed); ``incident`` is the
    incident's id ("" for change events); ``rule`` names the decision: a route's name,
    ``maintenance:NAME``, ``muted:NAME`` (a muted route suppressed it), ``routing-key`` or
    ``default``; ``night``: a muted route sent it to its night keys."""

    slot: int
    incident: str
    action: str  # event_action; "fresh" for a trigger whose dedup_key was minted here
    rule: str = DEFAULT
    channels: tuple[str, ...] = ()  # the names of the channels that hear of it
    night: bool = False  # sent to its route's night_keys: the route was muted
    window: str = ""  # the maintenance window that holds it (``Window.key``), if one does


class Router:
    def __init__(self, keys: Sequence[str], draining: frozenset[str] = frozenset(),
                 names: Sequence[str] = (), rules: Sequence[Rule] = (),
                 windows: Sequence[Window] = (), channels: Sequence[Channel] = (),
                 intervals: Iterable[TimeInterval] = ()) -> None:
        self.keys = tuple(keys)
        self.slots = {key: n for n, key in enumerate(self.keys, start=1)}
        self.active = tuple(k for k in self.keys if k not in draining)
        self.change_keys = tuple(k for k in self.active if not is_ruleset(k))
        by_name = dict(zip(names, self.keys, strict=False))
        self.rules = [(rule, tuple(by_name[n] for n in rule.keys if by_name[n] not in draining))
                      for rule in rules]
        self.nights = {rule.name: tuple(by_name[n] for n in rule.night_keys
                                        if by_name[n] not in draining) for rule in rules}
        self.intervals = {interval.name: interval for interval in intervals}
        unknown = {name for rule in rules for name in (*rule.timing.mute, *rule.timing.active)
                   if name not in self.intervals}
        if unknown:  # the routes file's check refuses them: a Router built without it
            raise ValueError("no time interval named " + ", ".join(sorted(unknown)))
        self.windows = tuple(windows)
        self.least = {c.name: c.min_severity for c in channels}  # each channel's own
        self.heard = any(rule.channels for rule in rules)

    def hearing(self, uses: Sequence[Use], event: dict[str, Any]) -> tuple[str, ...]:
        """The channels of ``uses`` whose least severity the event reaches (a change event
        counts as info)."""
        payload = event.get("payload")
        level = payload.get("severity") if isinstance(payload, dict) else None
        return hearing(uses, level, self.least)

    def first(self, event: dict[str, Any],
              context: dict[str, str]) -> tuple[Rule, tuple[str, ...]] | None:
        """The first route whose matchers all hold, and its keys in service."""
        for candidate, keys in self.rules:
            if all_hold(candidate.matchers, event, context) is None:
                return candidate, keys
        return None

    def route(self, kind: str, event: dict[str, Any], at: str,
              context: dict[str, str] | None = None, now: float = 0.0) -> Route | str:
        """Return the event's route, or the problem that keeps it from having one.
        Takes ``routing_key`` out of the event and mints a dedup_key for a trigger.
        ``context`` holds ``sender`` and ``adapter`` for matchers; ``now`` (seconds since
        the epoch) is compared with maintenance windows."""
        named = event.pop("routing_key", None)
        minted = kind == "alert" and event.get("dedup_key") is None
        if minted:
            event["dedup_key"] = mint_id()
        incident = incident_id(event["dedup_key"]) if kind == "alert" else ""
        action = "fresh" if minted else str(event.get("event_action", "change"))
        if named is not None:
            if named not in self.slots:
                return f"{at}routing_key {mask(named)} is not a configured routing key"
            if kind == "change" and is_ruleset(named):
                return (f"{at}routing_key {mask(named)} is a ruleset key; "
                        "PagerDuty takes no change events on ruleset keys")
            found = self.first(event, context or {}) \
                if self.heard and action in ("trigger", "fresh", "change") else None
            heard = self.hearing(found[0].channels, event) if found else ()
            return Route(-self.slots[named], incident, action, "routing-key", heard)
        rule, pool, heard, night = DEFAULT, self.active, (), False
        if action in ("trigger", "fresh", "change"):
            context = context or {}
            for window in self.windows:
                if window.start <= now < window.end and kind == "alert" and \
                        all_hold(window.matchers, event, context) is None:
                    return Route(0, incident, action, f"maintenance:{window.name}",
                                 window=window.key)
            found = self.first(event, context)
            if found is not None:
                candidate, keys = found
                heard = self.hearing(candidate.channels, event)
                if candidate.drop or not candidate.keys and candidate.channels:
                    return Route(0, incident, action, candidate.name, heard)
                rule, pool = candidate.name, keys or self.active
                if self.quiet(candidate, event, now):
                    if not candidate.night_keys:
                        return Route(0, incident, action, f"muted:{candidate.name}", heard)
                    pool, night = self.nights[candidate.name] or self.active, True
        if kind == "change":
            pool = tuple(k for k in pool if not is_ruleset(k)) or self.change_keys
            if not pool:
                return (f"{at}routing_key is missing and every configured key is a ruleset "
                        "key, which takes no change events")
            return Route(self.slots[choose_key(pool, mint_id())], "", "change", rule, heard,
                         night)
        return Route(self.slots[choose_key(pool, event["dedup_key"])], incident, action, rule,
                     heard, night)

    def quiet(self, rule: Rule, event: dict[str, Any], now: float) -> bool:
        """Whether ``rule``'s timing mutes ``event`` at ``now``: it is muted then, and the
        event is below its ``muted_min_severity`` (a change event counts as info)."""
        if not rule.timing.timed or not muted(rule.timing, self.intervals, now):
            return False
        least = rule.timing.min_severity
        if least is None:
            return True
        payload = event.get("payload")
        level = payload.get("severity") if isinstance(payload, dict) else None
        rank = LEVELS.index(level) if level in LEVELS else len(LEVELS) - 1
        return rank > LEVELS.index(least)


def outcome(route: Route) -> str:
    """What holding an event back on ``route`` counts as."""
    rule = route.rule
    if rule.startswith(("maintenance:", "muted:")):  # (a muted route's channels hear it)
        return "suppressed"
    if route.channels:
        return "channels-only"
    return "held" if rule in ("default", "routing-key") else "dropped"


def why(route: Route) -> str:
    """Why an event was held back, for its answer and its log line."""
    rule = route.rule
    if rule.startswith("maintenance:"):
        return f"suppressed by maintenance window {rule.split(':', 1)[1]}"
    if rule.startswith("muted:"):
        return (f"suppressed: route {rule.split(':', 1)[1]} is muted now (its "
                "mute_time_intervals or active_time_intervals) and has no night_keys"
                + (f"; its channels hear of it ({', '.join(route.channels)})"
                   if route.channels else ""))
    if route.channels:
        return f"sent to channels only ({', '.join(route.channels)}) by route {rule}"
    if rule in ("default", "routing-key"):
        return "held with its trigger, which was dropped or suppressed"
    return f"dropped by route {rule}"
