"""A channel's breaker (relay.channels.breaker), with a fake clock: it opens after
``failures`` failed sends in a row, or on the failed share of the window's sends; once
open no send is tried but one probe per cool-down, whatever the number of workers; the
probe's success closes it, its failure opens it again. A stateful test runs it against a
plain model."""

from __future__ import annotations

from dataclasses import dataclass, field

import fakeredis
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relay.channels.breaker import BUCKETS, VERSION, Breakers
from relay.names import Names
from relay.routes.channels import Breaker

NAMES = Names("pdr")


class Clock:
    def __init__(self, at: float = 1_800_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breakers(fake, clock: Clock) -> Breakers:
    return Breakers(fake, NAMES, clock)


IN_A_ROW = Breaker(failures=3, ratio=0, window_s=60, min_sends=10, cooldown_s=30)


def test_it_opens_after_failures_in_a_row_and_a_success_starts_the_count_again(
        breakers: Breakers, clock: Clock) -> None:
    for outcome in ("failed", "failed", "ok", "failed", "failed"):
        assert breakers.ask("chat", IN_A_ROW).state == "closed"
        assert breakers.record("chat", IN_A_ROW, outcome) == ("", 0)
    assert breakers.read("chat", IN_A_ROW).run == 2
    change, probe_at = breakers.record("chat", IN_A_ROW, "failed")
    assert change == "opened" and probe_at == breakers.now_ms() + 30_000
    state = breakers.read("chat", IN_A_ROW)
    assert (state.state, state.since_ms, state.opened, state.held) == \
        ("open", breakers.now_ms(), 1, 1)
    clock.at += 29.999
    verdict = breakers.ask("chat", IN_A_ROW)
    assert (verdict.state, verdict.probe_at_ms) == ("open", probe_at)
    assert breakers.read("chat", IN_A_ROW).held == 2


def test_one_probe_per_cool_down_its_failure_opens_it_again_its_success_closes_it(
        breakers: Breakers, clock: Clock) -> None:
    for _ in range(3):
        breakers.record("chat", IN_A_ROW, "failed")
    opened = breakers.now_ms()
    clock.at += 30
    probe = breakers.ask("chat", IN_A_ROW)
    assert probe.state == "probe" and probe.probe == 1
    # every other worker asking meanwhile holds its message, now and for a cool-down
    assert [breakers.ask("chat", IN_A_ROW).state for _ in range(5)] == ["open"] * 5
    clock.at += 2
    assert breakers.record("chat", IN_A_ROW, "failed", probe.probe) == \
        ("reopened", breakers.now_ms() + 30_000)
    clock.at += 29
    assert breakers.ask("chat", IN_A_ROW).state == "open"
    clock.at += 1
    second = breakers.ask("chat", IN_A_ROW)
    assert (second.state, second.probe) == ("probe", 2)
    # a late outcome of the first probe, or of a send begun before it opened: nothing
    assert breakers.record("chat", IN_A_ROW, "ok", probe.probe)[0] == "open"
    assert breakers.record("chat", IN_A_ROW, "ok")[0] == "open"
    state = breakers.read("chat", IN_A_ROW)
    assert (state.state, state.since_ms, state.probes) == ("open", opened, 2)
    assert breakers.record("chat", IN_A_ROW, "ok", second.probe)[0] == "closed"
    state = breakers.read("chat", IN_A_ROW)
    assert (state.state, state.run, state.held, state.opened) == ("closed", 0, 0, 1)
    assert breakers.ask("chat", IN_A_ROW).state == "closed"
    for _ in range(2):  # its counts started afresh
        assert breakers.record("chat", IN_A_ROW, "failed")[0] == ""


def test_a_pause_is_no_failure_and_a_paused_or_released_probe_proves_nothing(
        breakers: Breakers, clock: Clock) -> None:
    for _ in range(10):
        assert breakers.record("chat", IN_A_ROW, "pause") == ("", 0)
    assert breakers.read("chat", IN_A_ROW).sends == 0
    for _ in range(3):
        breakers.record("chat", IN_A_ROW, "failed")
    clock.at += 30
    probe = breakers.ask("chat", IN_A_ROW)
    assert breakers.record("chat", IN_A_ROW, "release", probe.probe)[0] == "open"
    again = breakers.ask("chat", IN_A_ROW)  # given back: the next ask probes at once
    assert (again.state, again.probe) == ("probe", 2)
    assert breakers.record("chat", IN_A_ROW, "pause", again.probe)[0] == "reopened"
    assert breakers.ask("chat", IN_A_ROW).state == "open"


SHARE = Breaker(failures=100, ratio=0.5, window_s=100, min_sends=10, cooldown_s=60)


def test_it_opens_on_the_failed_share_of_enough_sends_in_the_window(
        breakers: Breakers, clock: Clock) -> None:
    for _ in range(4):  # 4 of 8 failed: too few sends to judge
        breakers.record("chat", SHARE, "ok")
        assert breakers.record("chat", SHARE, "failed")[0] == ""
    clock.at += 101  # those are out of the window now
    for _ in range(5):
        breakers.record("chat", SHARE, "ok")
    for _ in range(4):
        assert breakers.record("chat", SHARE, "failed")[0] == ""
    state = breakers.read("chat", SHARE)
    assert (state.sends, state.failures) == (9, 4)
    assert breakers.record("chat", SHARE, "failed")[0] == "opened"  # 5 of 10: >= 0.5


def test_the_window_is_bounded_buckets_and_failures_zero_is_no_breaker(
        breakers: Breakers, clock: Clock, fake) -> None:
    for n in range(500):
        clock.at += 0.37
        breakers.record("chat", SHARE, "ok" if n % 3 else "failed")
    assert fake.hlen(NAMES.breaker("chat")) <= 3 * BUCKETS + 10
    off = Breaker(failures=0)
    for _ in range(20):
        assert breakers.ask("mail", off).state == "closed"
        assert breakers.record("mail", off, "failed") == ("", 0)
    assert not fake.exists(NAMES.breaker("mail"))


def test_a_hash_of_another_version_starts_afresh_closed(breakers: Breakers, fake) -> None:
    fake.hset(NAMES.breaker("chat"), mapping={"v": VERSION + 1, "state": "open",
                                              "probe_at": 10**15})
    assert breakers.read("chat").state == "closed"
    assert breakers.ask("chat", IN_A_ROW).state == "closed"
    assert fake.hget(NAMES.breaker("chat"), "state") is None


# -- the stateful test: workers asking and sending concurrently, against a plain model --

RULES = Breaker(failures=3, ratio=0.6, window_s=20, min_sends=5, cooldown_s=10)


@dataclass
class Model:
    """The rules, plainly: every send kept (not buckets), open/closed, probes."""

    state: str = "closed"
    run: int = 0
    sends: list[tuple[int, bool]] = field(default_factory=list)  # (ms, failed)
    probe_at: int = 0
    probe: int = 0

    def ask(self, now: int) -> tuple[str, int]:
        if self.state != "open":
            return "closed", 0
        if now < self.probe_at:
            return "open", 0
        self.probe += 1
        self.probe_at = now + int(RULES.cooldown_s * 1000)
        return "probe", self.probe

    def record(self, now: int, outcome: str, probe: int) -> str:
        cooldown = int(RULES.cooldown_s * 1000)
        if self.state == "open":
            if not probe or probe != self.probe:
                return "open"
            if outcome == "release":
                self.probe_at = now
                return "open"
            if outcome == "ok":
                self.state, self.run, self.sends = "closed", 0, []
                return "closed"
            self.probe_at = now + cooldown
            return "reopened"
        if outcome not in ("ok", "failed"):
            return ""
        failed = outcome == "failed"
        self.sends.append((now, failed))
        self.run = self.run + 1 if failed else 0
        width = int(RULES.window_s * 1000) // BUCKETS
        recent = [f for at, f in self.sends if at // width > now // width - BUCKETS]
        share = len(recent) >= RULES.min_sends and sum(recent) >= RULES.ratio * len(recent)
        if failed and (self.run >= RULES.failures or share):
            self.state, self.run, self.sends = "open", 0, []
            self.probe_at = now + cooldown
            return "opened"
        return ""


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.breakers = Breakers(fakeredis.FakeRedis(decode_responses=True), NAMES, self.clock)
        self.model = Model()
        # worker -> (verdict, probe, when given) of its send in flight
        self.out: dict[int, tuple[str, int, int]] = {}
        self.probes: list[int] = []  # when each probe that was sent was given (ms)

    def now(self) -> int:
        return self.breakers.now_ms()

    @rule(seconds=st.sampled_from([0, 0.001, 0.5, 1.9, 2, 5, 9.999, 10, 12, 25]))
    def advance(self, seconds: float) -> None:
        self.clock.at += seconds

    @rule(worker=st.integers(0, 3))
    def ask(self, worker: int) -> None:
        if worker in self.out:
            return
        verdict = self.breakers.ask("chat", RULES)
        expected, probe = self.model.ask(self.now())
        assert (verdict.state, verdict.probe) == (expected, probe)
        if verdict.state != "open":  # a held message is no send
            self.out[worker] = (verdict.state, verdict.probe, self.now())

    @precondition(lambda self: bool(self.out))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "failed", "failed", "pause",
                                                    "release"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        worker = data.draw(st.sampled_from(sorted(self.out)))
        _, probe, given = self.out.pop(worker)
        if outcome == "release" and not probe:
            outcome = "ok"
        if probe and outcome != "release":  # a probe sent: never two in one cool-down
            self.probes = sorted([*self.probes, given])  # (they may end in any order)
            gaps = [b - a for a, b in zip(self.probes, self.probes[1:], strict=False)]
            assert all(gap >= RULES.cooldown_s * 1000 for gap in gaps), self.probes
        change, _ = self.breakers.record("chat", RULES, outcome, probe)
        assert change == self.model.record(self.now(), outcome, probe)

    @invariant()
    def agrees(self) -> None:
        state = self.breakers.read("chat", RULES)
        assert state.state == self.model.state
        if state.open:
            assert state.probe_at_ms == self.model.probe_at
        else:
            assert state.run == self.model.run


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                            deadline=None)
test_the_breaker_keeps_its_rules_with_workers_at_once = BreakerMachine.TestCase
