"""When channels, uses of channels and routes speak: their quiet hours (``Timing``, named
time intervals: ``relay.routes.intervals``), digests and breakers, and the checks of
these fields of the routes file (each problem named by its path, as the rest of it).

    channels:
      - name: team-chat
        type: slack
        url: ${PD_RELAY_SECRET_TEAM_SLACK}
        mute_time_intervals: [nights]     # quiet hours: held, then one digest
        muted_min_severity: critical      # critical still goes at once
        muted: hold                       # or drop
        digest: 2m                        # gather 2 minutes, send one message
        digest_first: immediate           # a quiet period's first message at once
        breaker: {failures: 5, failure_ratio: 0.5, window: 5m, min_sends: 10,
                  cooldown: 5m}           # or breaker: off
        failed_max: 100
        maintenance: true                 # hears of maintenance windows
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from relay.severity import LEVELS

Problem = Callable[[str, str], None]
TIMING_FIELDS = ("mute_time_intervals", "active_time_intervals", "muted_min_severity")
USE_FIELDS = (*TIMING_FIELDS, "muted", "digest")
CHANNEL_FIELDS = (*USE_FIELDS, "digest_first", "breaker", "failed_max", "maintenance")
ROUTE_FIELDS = (*TIMING_FIELDS, "night_keys", "maintenance")
MUTED = ("hold", "drop")
DIGEST_FIRST = ("gather", "immediate")
UNITS = {"s": 1, "m": 60, "h": 3600}
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smh])$")
DAY = 86400.0


@dataclass(frozen=True)
class Timing:
    """When a route, a route's use of a channel, or a channel is muted: during any of its
    ``mute`` time intervals, and outside all of its ``active`` ones (when it names any),
    as Alertmanager's ``mute_time_intervals`` and ``active_time_intervals``
    (relay.routes.intervals). While muted, events at least ``min_severity`` (YAML
    ``muted_min_severity``) still go through as usual (None: none do)."""

    mute: tuple[str, ...] = ()  # names of the routes file's time_intervals
    active: tuple[str, ...] = ()
    min_severity: str | None = None

    @property
    def timed(self) -> bool:
        return bool(self.mute or self.active)


NO_TIMING = Timing()


@dataclass(frozen=True)
class Breaker:
    """When a channel's breaker opens (relay.channels.breaker): after ``failures``
    consecutive failed sends, or when at least ``min_sends`` sends in the last
    ``window_s`` failed in a share of ``ratio`` or more; then nothing is tried for
    ``cooldown_s`` but one probe. ``failures`` 0: no breaker (YAML ``breaker: off``)."""

    failures: int = 5
    ratio: float = 0.5
    window_s: float = 300.0
    min_sends: int = 10
    cooldown_s: float = 300.0


OFF = Breaker(failures=0)


def duration(value: Any, least: float = 1.0, most: float = DAY) -> tuple[float, str]:
    """Seconds of a duration: "30s", "2m", "1h" or a number of seconds; and '' or why
    it is wrong (below ``least`` or above ``most`` seconds)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := DURATION_RE.match(value.strip())):
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds is None or not least <= seconds <= most:
        return 0.0, (f"want a duration such as 30s, 2m or 1h (or seconds), from {least:g}s "
                     f"to {most / 3600:g}h")
    return seconds, ""


def timing(at: str, entry: Mapping[str, Any], intervals: Collection[str],
           problem: Problem) -> Timing:
    """``mute_time_intervals``, ``active_time_intervals`` and ``muted_min_severity`` of
    ``entry``: names of ``intervals``."""
    found: dict[str, tuple[str, ...]] = {}
    for field in ("mute_time_intervals", "active_time_intervals"):
        raw = entry.get(field)
        if raw is None:
            found[field] = ()
            continue
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            problem(f"{at}.{field}", "want a list of names of time_intervals")
            raw = []
        names = []
        for n, name in enumerate(raw):
            if not isinstance(name, str) or name not in intervals:  # (a dict: unhashable)
                problem(f"{at}.{field}[{n}]", f"no time interval named {str(name)[:40]!r} in "
                        "time_intervals (" + (", ".join(intervals) or "none defined") + ")")
            else:
                names.append(str(name))
        found[field] = tuple(names)
    least = entry.get("muted_min_severity")
    if least is not None and least not in LEVELS:
        problem(f"{at}.muted_min_severity", "want one of " + ", ".join(LEVELS))
        least = None
    if least is not None and not (entry.get("mute_time_intervals")
                                  or entry.get("active_time_intervals")):
        problem(f"{at}.muted_min_severity",
                "only with mute_time_intervals or active_time_intervals")
    return Timing(found["mute_time_intervals"], found["active_time_intervals"], least)


def use_fields(at: str, entry: Mapping[str, Any], intervals: Collection[str],
               problem: Problem) -> dict[str, Any]:
    """The timing fields of a use of a channel (``relay.routes.channels.Use``)."""
    found: dict[str, Any] = {"timing": timing(at, entry, intervals, problem)}
    if "muted" in entry:
        if entry["muted"] in MUTED:
            found["muted"] = entry["muted"]
        else:
            problem(f"{at}.muted", "want hold (a digest when the quiet interval ends) or drop")
    if "digest" in entry:
        seconds, why = duration(entry["digest"])
        if why:
            problem(f"{at}.digest", why)
        else:
            found["digest_s"] = seconds
    return found


def channel_fields(at: str, entry: Mapping[str, Any], intervals: Collection[str],
                   problem: Problem) -> dict[str, Any]:
    """The fields of a channel (``relay.routes.channels.Channel``) besides its type's:
    timing, muted, digest_s, digest_first, breaker, failed_max, maintenance."""
    found = use_fields(at, entry, intervals, problem)
    if "digest_first" in entry:
        if entry["digest_first"] in DIGEST_FIRST:
            found["digest_first"] = entry["digest_first"]
        else:
            problem(f"{at}.digest_first", "want gather or immediate")
    if "breaker" in entry:
        found["breaker"] = breaker(f"{at}.breaker", entry["breaker"], problem)
    if "failed_max" in entry:
        value = entry["failed_max"]
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000:
            found["failed_max"] = value
        else:
            problem(f"{at}.failed_max", "want a whole number from 1 to 100000")
    if "maintenance" in entry:
        found["maintenance"] = flag(f"{at}.maintenance", entry["maintenance"], problem)
    return found


def breaker(at: str, raw: Any, problem: Problem) -> Breaker:
    """``breaker: off`` (YAML reads it as false), ``breaker: on``/true (the defaults) or a
    mapping of failures, failure_ratio, window, min_sends and cooldown."""
    if raw is False or raw == "off":
        return OFF
    if raw is True or raw == "on":
        return Breaker()
    if not isinstance(raw, dict):
        problem(at, "want off, or a mapping of failures, failure_ratio, window, min_sends "
                "and cooldown")
        return Breaker()
    allowed = {"failures", "failure_ratio", "window", "min_sends", "cooldown"}
    for extra in sorted(set(raw) - allowed, key=str):
        problem(f"{at}.{extra}", "unknown field (want " + ", ".join(sorted(allowed)) + ")")
    found: dict[str, Any] = {}
    for field, key in (("failures", "failures"), ("min_sends", "min_sends")):
        value = raw.get(field)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10_000:
            found[key] = value
        else:
            problem(f"{at}.{field}", "want a whole number from 1 to 10000 (breaker: off for none)")
    ratio = raw.get("failure_ratio")
    if ratio is not None:
        if isinstance(ratio, int | float) and not isinstance(ratio, bool) and 0 < ratio <= 1:
            found["ratio"] = float(ratio)
        else:
            problem(f"{at}.failure_ratio", "want a share above 0 and at most 1, such as 0.5")
    for field, key in (("window", "window_s"), ("cooldown", "cooldown_s")):
        if field in raw:
            seconds, why = duration(raw[field])
            if why:
                problem(f"{at}.{field}", why)
            else:
                found[key] = seconds
    return Breaker(**found)


def flag(at: str, value: Any, problem: Problem) -> bool:
    if value is not True and value is not False:
        problem(at, "want true or false")
    return value is True


def route_fields(at: str, entry: Mapping[str, Any], intervals: Collection[str],
                 key_names: Collection[str], keyed: bool, problem: Problem) -> dict[str, Any]:
    """A route's ``timing``, ``night_keys`` and ``maintenance``; ``keyed``: the route
    sends to PagerDuty (it has keys)."""
    found: dict[str, Any] = {"timing": timing(at, entry, intervals, problem)}
    if found["timing"].timed and not keyed:
        problem(at, "a route's mute_time_intervals and active_time_intervals mute its "
                "PagerDuty events, and it has no keys (its channels' quiet hours are "
                "their own: give them on the channel or on its use)")
    if "maintenance" in entry:
        found["maintenance"] = flag(f"{at}.maintenance", entry["maintenance"], problem)
    raw = entry.get("night_keys")
    if raw is None:
        return found
    if not isinstance(raw, list) or not raw:
        problem(f"{at}.night_keys", "want a list of key names from the keys file")
        return found
    if not keyed or not found["timing"].timed:
        problem(f"{at}.night_keys", "only on a route with keys and mute_time_intervals or "
                "active_time_intervals: where its events go while it is muted")
    for n, key in enumerate(raw):
        if key not in key_names:
            problem(f"{at}.night_keys[{n}]", f"no key named {str(key)[:40]!r} in the keys file ("
                    + ", ".join(key_names) + ")")
    found["night_keys"] = tuple(str(key) for key in raw)
    return found
