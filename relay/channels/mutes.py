"""The muting questions of the dispatcher's decisions (relay.channels.decide): is a notice
muted for a channel (its use's quiet hours, or the channel's: ``relay.routes.intervals``),
until when, and is a due ``muted:<intervals>`` gathering still muted.

A mute followed by another (one interval right after another, or the use's beginning as
the channel's ends) is waited through, up to ``CHAINED`` of them; a timing that cannot be
evaluated mutes nothing (logged once). What was found is kept: a storm's notices ask once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from relay.channels.notice import Notice
from relay.routes import intervals as timed
from relay.routes.channels import NO_TIMING, Channel, Timing, Use
from relay.routes.intervals import TimeInterval
from relay.severity import LEVELS

log = logging.getLogger(__name__)
MUTED = "muted:"
CHAINED = 16  # mutes followed one after another at most (a flush asks again past them)
Mute = Callable[[Timing, Mapping[str, TimeInterval], float], "float | None"]


def group_of(timing: Timing) -> str:
    """The gathering of what ``timing`` holds: ``muted:<mute intervals>[|<active ones>]``."""
    return MUTED + ",".join(timing.mute) + ("|" + ",".join(timing.active)
                                            if timing.active else "")


def timing_of(group: str) -> Timing:
    """The timing a ``muted:`` group holds for (``group_of``'s inverse, no min_severity)."""
    mute, _, active = group.removeprefix(MUTED).partition("|")
    return Timing(tuple(name for name in mute.split(",") if name),
                  tuple(name for name in active.split(",") if name))


def passes(severity: str, least: str | None) -> bool:
    """An event of ``severity`` goes through a mute that lets ``least`` and up through."""
    if least is None or least not in LEVELS:
        return False
    return severity in LEVELS and LEVELS.index(severity) <= LEVELS.index(least)


class Mutes:
    """When the channels' and their uses' timings mute, over the named ``intervals``."""

    def __init__(self, intervals: Mapping[str, TimeInterval],
                 muted_until: Mute = timed.muted_until) -> None:
        self.intervals = intervals
        self.muted_until = muted_until
        self._told: set[Timing] = set()  # timings whose evaluation failed, logged once
        self._mutes: dict[Timing, tuple[float, float]] = {}  # the last mute found, each
        self._free: dict[Timing, float] = {}  # the last moment found not muted, each

    def muted(self, channel: Channel, use: Use | None,
              notice: Notice) -> tuple[str, int] | None:
        """(the gathering, due ms) when ``notice`` is muted for ``channel``, else None."""
        timings = [timing for timing in (use.timing if use is not None else NO_TIMING,
                                         channel.timing)
                   if timing.timed and not passes(notice.severity, timing.min_severity)]
        group, until = "", notice.accepted_ms / 1000
        for _ in range(CHAINED):  # one may begin as another ends: the first moment none mutes
            ends = [(timing, end) for timing in timings
                    if (end := self.mute_end(timing, until)) is not None]
            if not ends:
                break
            group, until = group or group_of(ends[0][0]), max(end for _, end in ends)
            if len(timings) < 2:
                break  # one timing's mute end is the first moment it does not mute
        return (group, math.ceil(until * 1000)) if group else None

    def mute_end(self, timing: Timing, at: float) -> float | None:
        """When ``timing``'s mute holding at ``at`` ends (None: not muted). A timing
        that cannot be evaluated mutes nothing (logged once)."""
        if not timing.timed:
            return None
        known = self._mutes.get(timing)
        if known is not None and known[0] <= at < known[1]:
            return known[1]  # muted from known[0] on without a break until known[1]
        if self._free.get(timing) == at:
            return None  # asked at this mute's end already (each notice's chain asks)
        try:
            end = self.muted_until(timing, self.intervals, at)
        except Exception as exc:  # noqa: BLE001 - never lose a notice to a bad timing
            if timing not in self._told:
                self._told.add(timing)
                log.error("the quiet hours %s could not be evaluated, they mute nothing: "
                          "%s: %s", group_of(timing), type(exc).__name__, exc)
            return None
        if end is not None:
            self._mutes[timing] = (at, end)  # a storm's notices ask once
        else:
            self._free[timing] = at
        return end

    def still_muted(self, channel: Channel | None, group: str, now_ms: int) -> int | None:
        """When a due ``muted:`` gathering is still muted (its own intervals, or its
        ``channel``'s), the end of that mute (ms); else None: its digest goes now."""
        if not group.startswith(MUTED):
            return None
        ends = [end for timing in (timing_of(group),
                                   channel.timing if channel else NO_TIMING)
                if (end := self.mute_end(timing, now_ms / 1000)) is not None]
        return math.ceil(max(ends) * 1000) if ends else None
