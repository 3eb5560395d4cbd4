"""A hypothesis state machine over checks gone from the routes file (relay.heartbeats.sweep,
issue 28's second review): two channel workers whose routes files differ (a rolling
change: both have ``a``, only the old one ``b``), the lease going from one to the other,
pings and time passing. A model says when ``b`` must be forgotten: once the new worker
alone evaluated, for GONE_AFTER_S since it first found ``b`` gone, and only then. ``a``,
in both files, is never forgotten; what PagerDuty is told of each check alternates
trigger, resolve for ``a``; a forgotten check keeps no incident open, no state and no token
(fakeredis: the Lua through lupa; the names fit in one slice)."""

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
from relay.heartbeats.sweep import GONE_AFTER_S
from relay.routes.config import RoutesFile
from tests.heartbeat_fixtures import NAMES, START, Clock, period_check

A, B = period_check("a", period_s=600, grace_s=60), period_check("b", period_s=600,
                                                                  grace_s=60)


class Gone(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = fakeredis.FakeRedis(decode_responses=True)
        self.clock = Clock(START)
        self.store = Heartbeats(self.client, NAMES, clock=self.clock)
        self.sent: dict[str, list[tuple[str, int, str]]] = {"a": [], "b": []}
        self.old, self.new = (
            Evaluator(self.client, NAMES, Catalog(RoutesFile(heartbeats=checks), None),
                      self.send, clock=self.clock, watch_ingress=False, gap_s=1e9)
            for checks in ((A, B), (A,)))
        self.noted: float | None = None  # the model: when the new worker found b gone
        self.kept_b = False  # something is kept for b
        self.forgotten = 0

    def send(self, page: Page, check: Check) -> None:
        self.sent[page.name].append((page.action, page.outage, page.reason))

    @rule(check=st.sampled_from((A, B)), signal=st.sampled_from(("success", "fail")))
    def ping(self, check: Check, signal: str) -> None:
        self.store.ping(check, signal)
        self.kept_b = self.kept_b or check is B

    @rule()
    def token_of_b(self) -> None:
        self.store.new_token("b")
        self.kept_b = True

    @rule(seconds=st.sampled_from((1.0, 60.0, 200.0, GONE_AFTER_S / 2, GONE_AFTER_S - 1,
                                   GONE_AFTER_S)))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(old=st.booleans())
    def a_round(self, old: bool) -> None:
        ev = self.old if old else self.new
        ev.round()
        ev.release()  # the next round may be the other's
        if old:
            self.noted = None
        elif self.kept_b and self.noted is None:
            self.noted = self.clock()
        elif self.kept_b and self.noted is not None \
                and (self.clock() - self.noted) * 1000 >= GONE_AFTER_S * 1000:
            self.noted, self.kept_b = None, False
            self.forgotten += 1
        assert self.client.sismember(NAMES.heartbeat_named, "b") == self.kept_b

    @invariant()
    def forgotten_only_when_the_model_says(self) -> None:
        removed = [p for p in self.sent["b"] if p[2] == "removed"]
        assert len(removed) <= self.forgotten
        assert all(p[2] != "removed" for p in self.sent["a"])
        if not self.kept_b:
            assert self.client.exists(NAMES.heartbeat("b"), NAMES.heartbeat_pings("b")) == 0
            assert not self.store.has_token("b")

    @invariant()
    def trigger_and_resolve_alternate(self) -> None:
        # (only a's: a trigger of b the new worker delivers is dropped, as no check of its)
        pages = self.sent["a"]
        assert [p[0] for p in pages] == ["trigger", "resolve"] * (len(pages) // 2) + \
            ["trigger"] * (len(pages) % 2)


Gone.TestCase.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestGone = Gone.TestCase
