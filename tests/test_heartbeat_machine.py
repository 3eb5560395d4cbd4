"""The check states as a hypothesis state machine: the real store and evaluators (the
Lua) on fakeredis (and, fewer runs, a real redis-server), with a clock the machine
moves, against a plain Python model of the rules (healthchecks.io's, docs/DESIGN.md
"Heartbeats"):

- pings of each signal, time passing (by any amount, or to exactly a check's deadline,
  or one ms past it), rounds by three evaluators (any of them; the lease may lapse and
  another take over), pause and resume, the ingress going away and back, and the
  relay's own gaps (time passing with no round);
- after every step the stored states equal the model's; the pages handed on plus those
  waiting in the outbox equal the model's, in order; for each check they alternate
  trigger, resolve, trigger... with the outage's number, one trigger per outage and one
  resolve after it; nothing pages for a paused check; a ping at exactly ``down_at`` is
  in time (a check goes down only once the time is past it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import fakeredis
import pytest
import redis
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check, Page
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.routes.config import RoutesFile
from tests.heartbeat_fixtures import START, Clock, real_redis

NAMES = Names("pdm")
CHECKS = (Check("a", grace_s=5, period_s=10, keys=("ops",)),
          Check("b", grace_s=3, period_s=7, keys=("ops",)))
GAP_MS = 15_000
REAL: list[redis.Redis] = []  # the module's redis-server, for RealHeartbeatMachine
__all__ = ["real_redis"]  # a fixture


@pytest.fixture(scope="module", autouse=True)
def _real(real_redis: redis.Redis) -> Iterator[None]:
    REAL.append(real_redis)
    yield
    REAL.clear()


@dataclass
class Model:
    state: str = "new"
    expected: int | None = None
    down: int | None = None
    open: int | None = None
    outages: int = 0


class HeartbeatMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = self.make_client()
        self.clock = Clock(START)
        self.store = Heartbeats(self.client, NAMES, clock=self.clock)
        catalog = Catalog(RoutesFile(heartbeats=CHECKS), None)
        self.sent: list[tuple[str, str, int]] = []
        self.evaluators = [
            Evaluator(self.client, NAMES, catalog, self.send, clock=self.clock,
                      monotonic=Clock(0.0), gap_s=GAP_MS / 1000, per_call=1, calls=10,
                      holder=f"e{n}") for n in range(3)]
        self.model = {check.name: Model() for check in CHECKS}
        self.pages: list[tuple[str, str, int]] = []  # what the model says was paged
        self.last_round = 0
        self.since = 0
        self.ingress = True
        self.mark = 0

    def make_client(self) -> redis.Redis:
        return fakeredis.FakeRedis(decode_responses=True)

    def send(self, page: Page, check: Check) -> None:
        assert page.name == check.name
        self.sent.append((page.name, page.action, page.outage))

    @property
    def now(self) -> int:
        return round(self.clock() * 1000)

    # the model's rules

    def page(self, name: str, action: str) -> None:
        found = self.model[name]
        if action == "trigger":
            if found.open is not None:
                return
            found.outages += 1
            found.open = found.outages
            self.pages.append((name, "trigger", found.outages))
        elif found.open is not None:
            self.pages.append((name, "resolve", found.open))
            found.open = None

    # rules

    @rule(which=st.sampled_from(CHECKS), signal=st.sampled_from(["success", "start", "fail"]))
    def ping(self, which: Check, signal: str) -> None:
        answer = self.store.ping(which, signal)
        found, now = self.model[which.name], self.now
        grace = round(which.grace_s * 1000)
        if signal == "success":
            self.page(which.name, "resolve")
            found.state, found.expected = "up", now + round((which.period_s or 0) * 1000)
            found.down = found.expected + grace
        elif signal == "start" and found.state != "down":
            if found.state in ("new", "paused"):
                found.expected = None
            begin = min(found.expected, now) if found.expected is not None else now
            found.state, found.down = "started", begin + grace
        elif signal == "fail" and found.state != "down":
            found.state, found.expected, found.down = "down", None, None
            self.page(which.name, "trigger")
        assert answer.state == found.state

    @rule(seconds=st.integers(min_value=1, max_value=30_000).map(lambda ms: ms / 1000))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(which=st.sampled_from(CHECKS), past=st.sampled_from([0, 1]))
    def to_the_deadline(self, which: Check, past: int) -> None:
        """To exactly a check's ``down_at`` (or one ms past it)."""
        down = self.model[which.name].down
        if down is not None and down + past > self.now:
            self.clock.at = (down + past) / 1000

    @rule(n=st.integers(min_value=0, max_value=2))
    def round(self, n: int) -> None:
        now = self.now
        if self.ingress:
            self.store.mark_ingress(3600)
            self.mark = now
        evaluator = self.evaluators[n]
        evaluator.round()
        if not evaluator.remaining():
            return  # another holds the lease: this one waits (evaluates nothing)
        if now - self.last_round > GAP_MS or now - self.mark > GAP_MS:
            self.since = now
        self.last_round = now
        for check in CHECKS:
            found, grace = self.model[check.name], round(check.grace_s * 1000)
            if found.state not in ("up", "late", "started") or found.down is None:
                continue
            if now > found.down and now > self.since + grace:
                found.state, found.expected, found.down = "down", None, None
                self.page(check.name, "trigger")
            elif now > found.down or (found.state == "up" and found.expected is not None
                                      and now > found.expected):
                if found.state == "up":
                    found.state = "late"

    @rule()
    def lease_lapses(self) -> None:
        self.client.delete(NAMES.heartbeat_lease)

    @rule(which=st.sampled_from(CHECKS))
    def pause(self, which: Check) -> None:
        self.store.pause(which.name, in_file=True)
        found = self.model[which.name]
        found.state, found.expected, found.down = "paused", None, None

    @rule(which=st.sampled_from(CHECKS))
    def resume(self, which: Check) -> None:
        found = self.model[which.name]
        assert self.store.resume(which.name) is (found.state == "paused")
        if found.state == "paused":
            found.state = "new"

    @precondition(lambda self: self.ingress)
    @rule()
    def ingress_goes_away(self) -> None:
        self.ingress = False
        self.client.delete(NAMES.heartbeat_ingress)  # its TTL ran out
        self.mark = 0

    @precondition(lambda self: not self.ingress)
    @rule()
    def ingress_comes_back(self) -> None:
        self.ingress = True

    # what must hold

    @invariant()
    def states_are_the_models(self) -> None:
        for check, stored in zip(CHECKS, self.store.states(CHECKS), strict=True):
            found = self.model[check.name]
            seen = (stored.state, stored.down_at, stored.outages)
            down = None if found.down is None else found.down / 1000
            assert seen == (found.state, down, found.outages), (check.name, seen, found)
            if found.state == "up":
                assert found.expected is not None
                assert stored.expected_at == found.expected / 1000

    @invariant()
    def pages_are_the_models_in_order(self) -> None:
        """Each check's, in order (one round orders the checks' pages by deadline)."""
        waiting = [(p.name, p.action, p.outage) for _, p in self.store.pages(1000)]
        for check in CHECKS:
            assert [p for p in self.sent + waiting if p[0] == check.name] == \
                [p for p in self.pages if p[0] == check.name]

    @invariant()
    def one_trigger_per_outage_then_one_resolve(self) -> None:
        for check in CHECKS:
            mine = [(action, outage) for name, action, outage in self.sent + [
                (p.name, p.action, p.outage) for _, p in self.store.pages(1000)]
                if name == check.name]
            expected = [("trigger" if n % 2 == 0 else "resolve", n // 2 + 1)
                        for n in range(len(mine))]
            assert mine == expected

    @invariant()
    def a_paused_check_has_nothing_due(self) -> None:
        for check in CHECKS:
            if self.model[check.name].state in ("paused", "new", "down"):
                assert self.client.zscore(NAMES.heartbeat_due, check.name) is None


TestHeartbeatMachine = HeartbeatMachine.TestCase
TestHeartbeatMachine.settings = hypothesis_settings(
    max_examples=100, stateful_step_count=50, deadline=None)


class RealHeartbeatMachine(HeartbeatMachine):
    """The same on a real redis-server (its Lua and cjson), fewer runs."""

    def make_client(self) -> redis.Redis:
        REAL[0].flushall()
        return REAL[0]


TestRealHeartbeatMachine = RealHeartbeatMachine.TestCase
TestRealHeartbeatMachine.settings = hypothesis_settings(
    max_examples=25, stateful_step_count=50, deadline=None)
