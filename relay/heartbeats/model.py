"""The facts the heartbeat family shares (see ``relay.heartbeats``): what a check is,
what state it is in, what a ping answers and what a page carries. Plain values only."""

from __future__ import annotations

from dataclasses import dataclass

from relay.routes.channels import Use
from relay.routes.matchers import Matcher

# A check's states (healthchecks.io's, with ``started`` a state of its own):
#   new      no ping yet (or resumed): never goes down by itself
#   up       the last ping was a success, and it is not yet due
#   late     due (past the expected time), not yet past the expected time + grace
#   started  a ``start`` waits for its success (down once grace passes without one)
#   down     missed, failed, or started and never finished: its incident is open
#   paused   ``pd-relay heartbeat pause``: nothing is expected, nothing is paged
STATES = ("new", "up", "late", "started", "down", "paused")
# What a ping says: ``/ping/<name>`` success, ``/start``, ``/fail``; an exit status is
# success (0) or fail (1..255), kept with the ping.
SIGNALS = ("success", "start", "fail")
DEDUP_PREFIX = "heartbeat:"  # a check's incident: dedup_key heartbeat:<name>
BODY_LIMIT = 10_000  # bytes of a ping's body kept (healthchecks.io's default)


@dataclass(frozen=True)
class Check:
    """A check, from the routes file (``origin`` "file") or added at run time ("cli")."""
    name: str
    grace_s: float
    period_s: float | None = None  # exactly one of period_s and cron
    cron: str | None = None
    tz: str = "UTC"  # IANA zone of the cron schedule
    severity: str = "critical"
    summary: str = ""  # the page's summary; "" -> "Heartbeat <name> is down" (pages.py)
    keys: tuple[str, ...] = ()  # key names: the incident goes on one of them
    channels: tuple[Use, ...] = ()  # and/or channels hear of it
    sources: tuple[str, ...] | None = None  # sources whose API key may ping (None: any)
    watchdog: tuple[Matcher, ...] = ()  # adapter alerts matching all of these are pings
    origin: str = "file"

    @property
    def dedup_key(self) -> str:
        return DEDUP_PREFIX + self.name


@dataclass(frozen=True)
class CheckState:
    """What Redis holds of a check now (times: seconds since the epoch, Redis's clock)."""
    name: str
    state: str  # one of STATES
    last_ping_at: float | None = None
    last_signal: str = ""  # success, start, fail ("" none yet)
    expected_at: float | None = None  # when the next ping is due (None: new/paused/down)
    down_at: float | None = None  # expected_at + grace, or the start's + grace
    since: float | None = None  # when it entered this state
    outages: int = 0  # how many times it went down (the current outage's number when down)


@dataclass(frozen=True)
class Ping:
    """A ping's answer: the check's state after it."""
    name: str
    state: str
    expected_at: float | None = None
    down_at: float | None = None


@dataclass(frozen=True)
class Page:
    """A trigger (the check went down) or resolve (up again) to send, from the outbox."""
    name: str
    action: str  # "trigger" or "resolve"
    outage: int  # the outage's number (CheckState.outages when it went down)
    reason: str  # "missed", "started" (no success within grace), "fail"; "" for a resolve
    at: float  # when it went down (or up)
    details: dict[str, object]  # last ping, expected at, how late, the last ping's body
