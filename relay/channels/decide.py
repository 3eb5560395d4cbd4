"""What the dispatcher does with one notice to one channel, and the digests it sends.

The notice's ``Use`` of the channel is its route's (the header's route name), else its
source's (the sender's), else none; the use's settings come before the channel's:

1. Muted (the use's quiet hours, or the channel's: ``relay.channels.mutes``), unless the
   event is at least that timing's ``min_severity``: with ``muted: drop`` the notice is
   dropped and counted (``<channel>:muted_dropped`` in ``Names.channel_stats``); else it is
   held in the gathering ``muted:<intervals>`` (``relay.channels.gather``) until the mute
   ends. Then one digest goes out, or, when the channel is still muted (one interval
   right after another), the gathering waits for that mute's end.
2. A digest period (``digest: 2m``): the notice joins the channel's ``digest`` gathering,
   sent when the period is over. With ``digest_first: immediate`` a quiet channel's
   first notice is sent at once and an empty gathering keeps the period: what comes
   within it is gathered, and after each digest the channel keeps gathering one more
   period, so a storm costs a channel one message a period. An empty gathering closes
   silently at its end.
3. While the channel's breaker is open (``relay.channels.breaker``) and its next probe is
   not due, the notice is held in the gathering ``breaker`` (as the courier holds one),
   with no RQ job: a storm to a dead endpoint costs no job a message, only the gathering.
4. Else its RQ job is made at once, unless the channel is behind: its bound of waiting
   jobs (``room``, set by the dispatcher each round: relay.channels.rqjobs.
   CHANNEL_BACKLOG_MAX) is reached. Then the notice joins the channel's ``backlog``
   gathering, and so do the channel's later notices while it is open (nothing overtakes
   it); it is due ``BACKLOG_S`` after it opened, and taken once the channel has room
   again (looked at every ``BACKLOG_WAIT_MS`` till then): one digest instead of a queue
   that would hold up the dispatcher, and so every other channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis

from relay.channels.breaker import Breakers
from relay.channels.courier import HELD
from relay.channels.digest import Digest
from relay.channels.gather import Gatherings
from relay.channels.mutes import MUTED, Mute, Mutes, group_of, timing_of
from relay.channels.notice import Notice
from relay.names import Names
from relay.routes import intervals as timed
from relay.routes.channels import Channel, Use
from relay.routes.config import RoutesFile
from relay.routes.intervals import TimeInterval

__all__ = ["BACKLOG", "MUTED", "Decider", "Mute", "Plan", "group_of", "timing_of"]
log = logging.getLogger(__name__)
BACKLOG = "backlog"  # the gathering of a channel that is behind
BACKLOG_S = 60.0  # it gathers at least this long
BACKLOG_WAIT_MS = 5_000  # a due one whose channel is still full: looked at again after


@dataclass(frozen=True)
class Plan:
    """What the decisions read of the routes file: each route's and source's uses of the
    channels (by name), and the named time intervals."""

    routes: Mapping[str, Mapping[str, Use]] = field(default_factory=dict)
    sources: Mapping[str, Mapping[str, Use]] = field(default_factory=dict)
    intervals: Mapping[str, TimeInterval] = field(default_factory=dict)

    @classmethod
    def of(cls, routes: RoutesFile | None) -> Plan:
        if routes is None:
            return cls()
        return cls({r.name: {u.name: u for u in r.channels} for r in routes.routes},
                   {s.name: {u.name: u for u in s.channels} for s in routes.sources},
                   {i.name: i for i in routes.time_intervals})

    def use(self, channel: str, notice: Notice) -> Use | None:
        return self.routes.get(notice.route, {}).get(channel) or \
            self.sources.get(notice.source, {}).get(channel)


class Decider:
    def __init__(self, client: redis.Redis, names: Names, channels: Mapping[str, Channel],
                 plan: Plan, put: Callable[[Channel, Notice], bool],
                 put_digest: Callable[[Channel, Digest], bool],
                 muted_until: Mute = timed.muted_until,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.names = names
        self.channels = channels
        self.plan = plan
        self.put = put
        self.put_digest = put_digest
        self.clock = clock
        self.mutes = Mutes(plan.intervals, muted_until)
        self.gatherings = Gatherings(client, names, clock)
        self.breakers = Breakers(client, names, clock)
        # jobs each channel with a bound may still take (none: no bound known), and the
        # channels whose open backlog gathering their notices join (the dispatcher's)
        self.room: dict[str, int] = {}
        self.behind: set[str] = set()
        self.recovering = False  # making a dead dispatcher's entries again

    def decide(self, channel: Channel, notice: Notice) -> str:
        """Send, hold, drop or gather ``notice`` for ``channel``; say which ("sent",
        "held", "dropped", "gathered")."""
        use = self.plan.use(channel.name, notice)
        mark = f"{channel.name}\x1f{notice.id}"
        muted = self.mutes.muted(channel, use, notice)
        if muted is not None:
            if (use.muted if use is not None and use.muted else channel.muted) == "drop":
                self.client.hincrby(self.names.channel_stats, f"{channel.name}:muted_dropped",
                                    1)
                return "dropped"
            group, due_ms = muted
            if self._park(channel, group, notice, due_ms, mark):
                return "held"
        period = use.digest_s if use is not None and use.digest_s is not None \
            else channel.digest_s
        if period > 0:
            period_ms = max(1, int(period * 1000))
            due_ms = self._now_ms() + period_ms
            if channel.digest_first != "immediate":
                if self._park(channel, "digest", notice, due_ms, mark):
                    return "gathered"
            elif self._park(channel, "digest", notice, due_ms, mark, period_ms):
                return "gathered"
        probe_at = self.breakers.held_until(channel.name, channel.breaker)
        if probe_at:  # as the courier would hold it, without a job (a storm: no job each)
            # its own mark: ``first`` may have marked this notice "send it yourself"
            self.gatherings.park(channel.name, HELD, notice, probe_at, f"{mark}\x1f{HELD}")
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.names.breaker(channel.name), "held", 1)
                pipe.hincrby(self.names.channel_stats, f"{channel.name}:held", 1)
                pipe.execute()
            return "held"
        return self._send(channel, notice, mark)

    def _send(self, channel: Channel, notice: Notice, mark: str) -> str:
        """Make ``notice``'s job, or gather it while ``channel`` is behind. A dead
        dispatcher's entry goes as it went: gathered if its mark says so, else a job (RQ
        refuses a second one; one it had not made yet is made too), never both."""
        room = self.room.get(channel.name)
        if self.recovering and room is not None and \
                self.client.hget(self.names.gathering_marks, mark) in ("1", b"1"):
            return "gathered"
        if not self.recovering and room is not None and (room <= 0 or
                                                         channel.name in self.behind):
            if self._park(channel, BACKLOG, notice,
                          self._now_ms() + round(BACKLOG_S * 1000), mark):
                self.behind.add(channel.name)
                return "gathered"
        self.put(channel, notice)
        if room is not None:
            self.room[channel.name] = room - 1
        return "sent"

    def _park(self, channel: Channel, group: str, notice: Notice, due_ms: int, mark: str,
              first_ms: int = 0) -> bool:
        """Park ``notice`` (with ``first_ms``: ``digest_first: immediate``, a period that
        long); False: send it now (the first of a quiet period, or a gathering this
        release cannot add to: a later release's)."""
        try:
            if first_ms:
                return self.gatherings.first(channel.name, group, notice, due_ms, first_ms,
                                             mark)
            return self.gatherings.park(channel.name, group, notice, due_ms, mark)
        except ValueError as exc:
            log.error("channel %s: %s; its notice is sent as it is", channel.name, exc)
            return False

    def flush(self, limit: int) -> int:
        """Take up to ``limit`` due gatherings and make their digests' jobs; return how
        many digests were made."""
        now_ms = self._now_ms()
        self.gatherings.take_due(now_ms, limit,
                                 lambda channel, group: self.hold(channel, group, now_ms))
        return self.make_digests()

    def hold(self, channel: str, group: str, now_ms: int) -> int | None:
        """When a due gathering is to wait: a ``muted:`` one still muted, a ``backlog``
        one whose channel has no room yet; then until when (ms), else None."""
        if group == BACKLOG:
            return now_ms + BACKLOG_WAIT_MS if self.room.get(channel, 1) <= 0 else None
        return self.mutes.still_muted(self.channels.get(channel), group, now_ms)

    def make_digests(self) -> int:
        """Make the jobs of the digests taken (also those a crashed dispatcher left)."""
        made = []
        for digest in self.gatherings.taken():
            channel = self.channels.get(digest.channel)
            if channel is None:
                log.warning("no channel named %s in the routes file now: its digest of %d "
                            "notice(s) is not sent", digest.channel, digest.total)
            else:
                self.put_digest(channel, digest)
                if channel.name in self.room:
                    self.room[channel.name] -= 1
            if digest.reason == BACKLOG:
                self.behind.discard(digest.channel)
            made.append(digest)
        self.gatherings.forget(made)
        return len(made)

    @property
    def muted_until(self) -> Mute:
        """What tells when a timing's mute ends (``relay.routes.intervals.muted_until``)."""
        return self.mutes.muted_until

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)
