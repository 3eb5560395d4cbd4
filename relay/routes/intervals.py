"""Time intervals, in Alertmanager's syntax and meaning (its ``time_intervals``): named
lists of ``times``, ``weekdays``, ``days_of_month``, ``months``, ``years`` and
``location``, used by a route, a route's use of a channel or a channel as
``mute_time_intervals`` and ``active_time_intervals`` (``relay.routes.timing.Timing``).

    time_intervals:
      - name: nights
        time_intervals:
          - times: [{start_time: "22:00", end_time: "24:00"},
                    {start_time: "00:00", end_time: "07:00"}]
            location: Europe/Berlin

An instant is in a spec when its wall clock in the spec's ``location`` (the standard
library's ``zoneinfo``; UTC by default) is in every field the spec gives; so a "22:00"
holds at 22:00 local time on both sides of a DST change, the hour a spring change skips
is never seen, and the hour an autumn change repeats is seen twice. The routes file's
reading is ``relay.routes.intervalconfig``.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from relay.routes.timing import Timing

Range = tuple[int, int]  # inclusive (times: minutes of the day, the end excluded)
HORIZON_S = 400 * 86400.0  # how far muted_until looks ahead
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Spec:
    """One entry of an interval's ``time_intervals``: every field it gives holds (None:
    not given, any value holds). ``times`` in minutes of the day, [start, end);
    ``weekdays`` 0 (Sunday) to 6; ``days_of_month`` 1 to 31 or -31 to -1 (from the end
    of the month); ``months`` 1 to 12; all other ranges inclusive."""

    times: tuple[Range, ...] | None = None
    weekdays: tuple[Range, ...] | None = None
    days_of_month: tuple[Range, ...] | None = None
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    zone: tzinfo = UTC

    def day_holds(self, day: datetime) -> bool:
        """Whether the date of ``day`` (a wall clock of ``zone``) is in the spec."""
        if self.years is not None and not _within(day.year, self.years):
            return False
        if self.months is not None and not _within(day.month, self.months):
            return False
        if self.weekdays is not None and not _within((day.weekday() + 1) % 7, self.weekdays):
            return False
        if self.days_of_month is not None:
            length = calendar.monthrange(day.year, day.month)[1]
            return any(_day_in(day.day, length, r) for r in self.days_of_month)
        return True

    def holds(self, wall: datetime) -> bool:
        minute = wall.hour * 60 + wall.minute
        return self.day_holds(wall) and (
            self.times is None or any(start <= minute < end for start, end in self.times))

    def next_change(self, wall: datetime) -> datetime:
        """The first wall clock after ``wall`` (a whole minute) at which whether the spec
        holds may change: one of its times today, else the next midnight."""
        midnight = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
        if self.times is None or not self.day_holds(wall):
            return midnight
        minute = wall.hour * 60 + wall.minute
        later = [edge for pair in self.times for edge in pair if minute < edge < 1440]
        return midnight - timedelta(minutes=1440 - min(later)) if later else midnight


def _within(value: int, ranges: Iterable[Range]) -> bool:
    return any(low <= value <= high for low, high in ranges)


def _day_in(day: int, length: int, span: Range) -> bool:
    """Alertmanager's reading of a days_of_month range in a month of ``length`` days:
    negative days count from its end (-1: the last day); a range beginning after the
    month's end holds on none of it (Alertmanager skips it); a beginning before the
    month's start or an end past its end reach no further than the month (it clamps)."""
    begin = length + span[0] + 1 if span[0] < 0 else span[0]
    end = length + span[1] + 1 if span[1] < 0 else span[1]
    return begin <= length and begin <= day <= end


@dataclass(frozen=True)
class TimeInterval:
    """One named entry of ``time_intervals``: it holds when any of its ``specs`` holds
    (each spec: all of its given fields hold)."""

    name: str
    specs: tuple[Spec, ...] = ()

    def holds(self, at: float) -> bool:
        return any(spec.holds(_wall(at, spec.zone)) for spec in self.specs)


def _wall(at: float, zone: tzinfo) -> datetime:
    """The naive wall clock of ``zone`` at ``at``, to the minute."""
    return datetime.fromtimestamp(at, zone).replace(second=0, microsecond=0, tzinfo=None,
                                                    fold=0)


def muted(timing: Timing, intervals: Mapping[str, TimeInterval], at: float) -> bool:
    """Whether ``timing`` is muted at ``at``: in one of its mute intervals, or outside
    all of its active ones (when it names any)."""
    if any(intervals[name].holds(at) for name in timing.mute):
        return True
    return bool(timing.active) and not any(intervals[name].holds(at) for name in timing.active)


def muted_until(timing: Timing, intervals: Mapping[str, TimeInterval],
                at: float) -> float | None:
    """None when ``timing`` is not muted at ``at`` (seconds since the epoch); else when
    the mute ends (seconds since the epoch; the first moment it is not muted). A timing
    still muted ``HORIZON_S`` (400 days) on is said to be muted until then: ask again."""
    if not timing.timed or not muted(timing, intervals, at):
        return None
    specs = [spec for name in (*timing.mute, *timing.active) for spec in intervals[name].specs]
    now, end = at, at + HORIZON_S
    while now < end:
        now = min([_next_change(spec, now) for spec in specs] + [end])
        if not muted(timing, intervals, now):
            return now
    return end


def _next_change(spec: Spec, now: float) -> float:
    """An instant after ``now`` and no later than the first at which whether ``spec``
    holds may change: its next wall-clock edge, or its zone's next change of offset
    before it (the wall clock jumps there), whichever comes first."""
    wall = _wall(now, spec.zone)
    edge = spec.next_change(wall)
    # The first instant showing ``edge``: of its two readings (it is ambiguous in an
    # autumn hour, missing in a spring one), the earliest after now; earlier is harmless.
    then = min((t for t in (edge.replace(tzinfo=spec.zone, fold=f).timestamp() for f in (0, 1))
                if t > now), default=now + 1.0)
    return min(then, _offset_change(spec.zone, now, then))


def _offset_change(zone: tzinfo, start: float, end: float) -> float:
    """The first second after ``start`` with another UTC offset than at ``start``, when
    ``end`` has one (zones change offset months apart: one change at most between);
    else ``end``."""
    offset = datetime.fromtimestamp(start, zone).utcoffset()
    if datetime.fromtimestamp(end, zone).utcoffset() == offset:
        return end
    low, high = math.floor(start), math.ceil(end)  # offset(low) as at start; high's differs
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return float(high)
