"""When a check's next ping is expected: ``period`` after the last ping, or the next time
of its ``cron`` schedule after the last ping, in the check's ``tz`` (cronsim: Debian
cron's semantics, its daylight-saving rules included). Times are seconds since the
epoch; grace is added to the expected time in UTC, never to a local time (an hour lost
or gained at a DST change would move the deadline)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from relay.heartbeats.model import Check

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
LONGEST_S = 366 * 86400  # a period or grace longer than a year is a mistake


def duration(value: Any) -> float | None:
    """Seconds of ``90s``, ``5m``, ``1h``, ``1d`` or a number of seconds; None if it is
    none of these, or not from 1 s to a year."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found[1]) * UNITS[found[2]]
    else:
        return None
    return seconds if 1 <= seconds <= LONGEST_S else None


def zone(name: Any) -> ZoneInfo | None:
    """The IANA time zone ``name``, or None when there is no such zone."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def cron_problem(expression: Any, tz: str = "UTC") -> str:
    """What is wrong with a cron expression ('' when nothing): five fields, as crontab
    has them, that cronsim reads and that match some time."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        return "want a cron schedule of five fields (minute hour day month weekday)"
    where = zone(tz) or ZoneInfo("UTC")
    try:
        next(CronSim(expression, datetime.now(where)))
    except (CronSimError, StopIteration) as exc:
        return f"not a cron schedule: {exc or 'it never matches'}"
    return ""


def cron_times(expression: str, tz: str, after: float, count: int) -> list[float]:
    """The next ``count`` times of the schedule strictly after ``after``. (From a time in
    the second pass of an hour the clocks repeat, cronsim starts from its first pass: the
    times of that hour before ``after``, at most an hour's, are skipped.)"""
    where = zone(tz) or ZoneInfo("UTC")
    times = CronSim(expression, datetime.fromtimestamp(after, where))
    found: list[float] = []
    while len(found) < count:
        at = next(times).timestamp()
        if at > after:
            found.append(at)
    return found


def expected_after(check: Check, last_ping_at: float) -> float:
    """When the ping after one at ``last_ping_at`` is expected (seconds, UTC)."""
    if check.cron is not None:
        return cron_times(check.cron, check.tz, last_ping_at, 1)[0]
    assert check.period_s is not None
    return last_ping_at + check.period_s


def shown(seconds: float) -> str:
    """A duration as the routes file writes it (``90s``, ``5m``, ``1h``, ``2d``)."""
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{seconds:g}s"
