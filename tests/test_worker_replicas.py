"""A worker's send waits for the replicas (issue 27): with RELAY_MIN_REPLICAS > 0 a send
starts only once WAIT confirmed the limiter's reservation (and the lease renewal after
it, and so every earlier write of the key: a replica's stream is a prefix of the
primary's) on enough replicas; unconfirmed, it backs off and tries again. The replicas'
answer is injected (fakeredis has no WAIT)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relay.limiter import RateLimiter
from relay.settings import Settings
from tests.conftest import make_key, trigger
from tests.test_worker import ScriptedPagerDuty, make_worker, queue, stats
from worker.delivery import Shutdown, Worker
from worker.lease import Lease


def test_a_send_waits_until_its_reservation_is_confirmed(settings, fake, monkeypatch) -> None:
    key = settings.routing_keys[0]
    settings = replace(settings, min_replicas=1, replica_timeout_ms=300)
    queue(fake, key, trigger("one", dedup_key="d1"))
    calls: list[Any] = []
    answers = iter([0, 0, 1])  # two WAITs fall short, the third confirms
    acquire = RateLimiter.try_acquire

    def reserve(self: RateLimiter, burst: int = 0) -> float:
        calls.append("reserve")
        return acquire(self, burst)

    def confirmed(self: Lease, replicas: int, timeout_ms: int) -> tuple[bool, int]:
        calls.append(("wait", replicas, timeout_ms, len(pd.sent)))
        return self.renew(), next(answers)

    monkeypatch.setattr(RateLimiter, "try_acquire", reserve)
    monkeypatch.setattr(Lease, "renew_confirmed", confirmed)
    pd = ScriptedPagerDuty()
    sleeps: list[float] = []
    worker = make_worker(settings, fake, pd, sleeps)
    assert worker.lease.acquire()
    worker.step()
    assert [body["dedup_key"] for _, body in pd.sent] == ["d1"]
    # each attempt reserves, then waits; nothing was sent before the third confirmed
    assert calls == ["reserve", ("wait", 1, 300, 0), "reserve", ("wait", 1, 300, 0),
                     "reserve", ("wait", 1, 300, 0)]
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)  # backed off twice
    assert stats(fake, key)["delivered"] == "1"


def test_no_wait_with_min_replicas_0(settings, fake, monkeypatch) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger("one", dedup_key="d1"))

    def never(*args: Any) -> Any:
        raise AssertionError("WAIT sent with RELAY_MIN_REPLICAS=0")

    monkeypatch.setattr(Lease, "renew_confirmed", never)
    pd = ScriptedPagerDuty()
    worker = make_worker(replace(settings, min_replicas=0), fake, pd)
    assert worker.lease.acquire()
    worker.step()
    assert len(pd.sent) == 1


class ConfirmMachine(RuleBasedStateMachine):
    """The worker's WAIT gate as a state machine: events arrive, the replicas confirm
    or not (injected), the worker steps; an unconfirmed attempt backs off (here: the
    step ends). Checked: every send follows a reservation and then a confirmed WAIT with
    no send between; sends go in queue order (a re-send repeats in place); a send never
    happens while the replicas do not confirm; every event is sent once they do."""

    def __init__(self) -> None:
        super().__init__()
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.key = make_key()
        path = Path(tempfile.mkdtemp()) / "keys.txt"
        path.write_text(self.key + "\n")
        self.settings = Settings(routing_keys=(self.key,), keys_file=path, retry_base_s=0.01,
                                 lease_ttl_s=1, connect_timeout_s=0.2, read_timeout_s=0.5,
                                 rate_per_min=10_000, min_replicas=1)
        self.log: list[Any] = []
        self.confirming = False
        self.queued = 0
        machine = self

        def reserve(limiter: RateLimiter, burst: int = 0) -> float:
            machine.log.append("reserve")
            return ACQUIRE(limiter, burst)

        def confirmed(lease: Lease, replicas: int, timeout_ms: int) -> tuple[bool, int]:
            machine.log.append(("wait", machine.confirming))
            return lease.renew(), int(machine.confirming)

        def stop(seconds: float) -> None:
            raise Shutdown  # an unconfirmed attempt backs off: the step ends here

        self.patches = [mock.patch.object(RateLimiter, "try_acquire", reserve),
                        mock.patch.object(Lease, "renew_confirmed", confirmed)]
        for patch in self.patches:
            patch.start()
        self.pd = ScriptedPagerDuty()
        self.worker = Worker(self.settings, self.key, self.fake,
                             pagerduty=self.pd, sleep=stop, worker_id="w1")  # type: ignore[arg-type]
        self.worker.lease.clock = lambda: 0.0
        assert self.worker.lease.acquire()

    def teardown(self) -> None:
        for patch in self.patches:
            patch.stop()
        self.fake.flushall()

    @rule(n=st.integers(1, 3))
    def arrive(self, n: int) -> None:
        for _ in range(n):
            queue(self.fake, self.key, trigger(f"e{self.queued}", dedup_key=f"d{self.queued}"))
            self.queued += 1

    @rule(on=st.booleans())
    def replicas(self, on: bool) -> None:
        self.confirming = on

    @rule()
    def step(self) -> None:
        sent = len(self.pd.sent)
        try:
            self.worker.step()
        except Shutdown:
            pass
        if not self.confirming:
            assert len(self.pd.sent) == sent, "sent while the replicas did not confirm"

    @invariant()
    def every_send_follows_a_reservation_then_a_confirmed_wait(self) -> None:
        pairs = _attempts(self.log)
        sends = sum(1 for _, wait in pairs if wait)
        assert sends == len(self.pd.sent)

    @invariant()
    def sends_go_in_queue_order(self) -> None:
        seqs = [int(body["dedup_key"][1:]) for _, body in self.pd.sent]
        assert seqs == list(range(len(seqs)))

    @invariant()
    def once_confirming_everything_goes(self) -> None:
        if self.confirming:
            for _ in range(self.queued + 1):
                self.step()
            assert len(self.pd.sent) == self.queued


def _attempts(log: list[Any]) -> list[tuple[str, bool]]:
    """Each attempt: its reservation and whether the WAIT after it confirmed (a WAIT
    always follows its own reservation, with nothing between)."""
    attempts = []
    for at, entry in enumerate(log):
        if entry == "reserve":
            after = log[at + 1] if at + 1 < len(log) else None
            assert after is not None and after[0] == "wait", log[at:at + 2]
            attempts.append(("reserve", bool(after[1])))
    return attempts


ACQUIRE = RateLimiter.try_acquire
TestConfirmMachine = ConfirmMachine.TestCase
TestConfirmMachine.settings = hypothesis_settings(
    max_examples=40, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
