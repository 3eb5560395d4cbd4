"""A hypothesis state machine over the heartbeats' states and pages (issue 28's review):
pings of every signal, time passing (the relay's own downtime among it), pause and
resume, rounds of two evaluators, sends that fail. Whatever the order, what PagerDuty is
told of each check alternates trigger, resolve (one incident per outage, never a resolve
before its trigger), a down check's incident is open, an up one's closed, and no check
stays past its deadline after a round, nor goes down before it
(or within one grace of the relay's return) (fakeredis: the Lua through lupa)."""

from __future__ import annotations

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check, Page
from relay.heartbeats.store import Heartbeats
from relay.routes.config import RoutesFile
from tests.heartbeat_fixtures import NAMES, START, Clock, period_check

CHECKS = (period_check("a", period_s=60, grace_s=30), period_check("b", period_s=10,
                                                                  grace_s=5))
GAP_S = 15.0


class States(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = fakeredis.FakeRedis(decode_responses=True)
        self.clock = Clock(START)
        self.store = Heartbeats(self.client, NAMES, clock=self.clock)
        self.sent: dict[str, list[tuple[str, int]]] = {c.name: [] for c in CHECKS}
        self.failing = False
        catalog = Catalog(RoutesFile(heartbeats=CHECKS), None)
        self.evaluators = [Evaluator(self.client, NAMES, catalog, self.send, clock=self.clock,
                                     watch_ingress=False, gap_s=GAP_S) for _ in range(2)]
        self.evaluators[0].round()

    def send(self, page: Page, check: Check) -> None:
        if self.failing:
            raise RuntimeError("the queue is full")
        self.sent[page.name].append((page.action, page.outage))

    @rule(check=st.sampled_from(CHECKS), signal=st.sampled_from(("success", "start", "fail")),
          after=st.sampled_from((0.0, 0.001, 1.0, 4.0)))
    def ping(self, check: Check, signal: str, after: float) -> None:
        self.clock.advance(after)
        self.store.ping(check, signal)

    @rule(seconds=st.sampled_from((0.001, 1.0, 5.0, 9.0, 10.0, 14.0, 16.0, 31.0, 60.0,
                                   200.0)))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(check=st.sampled_from(CHECKS))
    def pause(self, check: Check) -> None:
        self.store.pause(check.name, in_file=True)

    @rule(check=st.sampled_from(CHECKS))
    def resume(self, check: Check) -> None:
        self.store.resume(check.name)

    @rule(which=st.integers(0, 1), failing=st.booleans())
    def round(self, which: int, failing: bool) -> None:
        before = {state.name: state for state in self.store.states(CHECKS)}
        self.failing = failing
        self.evaluators[which].round()
        self.failing = False
        since = self.store.gap().get("since") or START
        for state in self.store.states(CHECKS):  # down only once its time came
            was = before[state.name]
            if state.state == "down" and was.state in ("up", "late", "started"):
                grace = next(c.grace_s for c in CHECKS if c.name == state.name)
                assert was.down_at is not None and self.clock() > was.down_at, (was, state)
                assert self.clock() > since + grace, (was, state, since)
        if failing:
            return
        for _ in range(3):  # whoever holds the lease hands everything on
            for ev in self.evaluators:
                ev.round()
        if self.store.pages(1):
            return  # the other holds the lease: its next round
        since = self.store.gap().get("since") or START
        now = self.clock()
        for state in self.store.states(CHECKS):
            sent = self.sent[state.name]
            if state.state == "down":
                assert sent and sent[-1][0] == "trigger", (state, sent)
            if state.state in ("up", "late"):
                assert not sent or sent[-1][0] == "resolve", (state, sent)
            if state.state in ("up", "late", "started"):
                grace = next(c.grace_s for c in CHECKS if c.name == state.name)
                assert state.down_at is not None
                assert now <= max(state.down_at, since + grace) + 1e-6, (state, now, since)

    @invariant()
    def one_incident_per_outage(self) -> None:
        for name, sent in self.sent.items():
            actions = [action for action, _ in sent]
            assert actions == ["trigger", "resolve"] * (len(sent) // 2) + \
                ["trigger"] * (len(sent) % 2), (name, sent)
            for (_, opened), (_, closed) in zip(sent[::2], sent[1::2], strict=False):
                assert opened == closed, (name, sent)
            outages = [outage for action, outage in sent if action == "trigger"]
            assert outages == sorted(set(outages)), (name, sent)


TestStates = States.TestCase
TestStates.settings = hypothesis_settings(max_examples=100, stateful_step_count=40,
                                          deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
