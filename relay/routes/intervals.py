"""Time intervals, in Alertmanager's syntax and meaning (its ``time_intervals``): named
lists of ``times``, ``weekdays``, ``days_of_month``, ``months``, ``years`` and
``location``, used by a route, a route's use of a channel or a channel as
``mute_time_intervals`` and ``active_time_intervals`` (``relay.routes.channels.Timing``).

    time_intervals:
      - name: nights
        time_intervals:
          - times: [{start_time: "22:00", end_time: "24:00"},
                    {start_time: "00:00", end_time: "07:00"}]
            location: Europe/Berlin

Times are read in the interval's ``location`` (the standard library's ``zoneinfo``; UTC by
default), so a "22:00" holds at 22:00 local time on both sides of a DST change.

CONTRACT (issue 30): ``TimeInterval`` and ``muted_until`` are what the rest of the relay
uses; the parsing (``time_intervals`` of the routes file) and the evaluation are built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.routes.channels import Timing


@dataclass(frozen=True)
class TimeInterval:
    """One named entry of ``time_intervals``: it holds when any of its ``specs`` holds
    (each spec: all of its given fields hold)."""

    name: str
    specs: tuple[Any, ...] = ()


def muted_until(timing: Timing, intervals: Mapping[str, TimeInterval],
                at: float) -> float | None:
    """None when ``timing`` is not muted at ``at`` (seconds since the epoch); else when
    the mute ends (seconds since the epoch; the first moment it is not muted)."""
    if not timing.timed:
        return None
    raise NotImplementedError("issue 30: time intervals")
