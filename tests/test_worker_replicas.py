"""A worker's send waits for the replicas (issue 27): with RELAY_MIN_REPLICAS > 0 a send
starts only once WAIT confirmed the limiter's reservation (and the lease renewal after
it, and so every earlier write of the key: a replica's stream is a prefix of the
primary's) on enough replicas; unconfirmed, it backs off and tries again. The replicas'
answer is injected (fakeredis has no WAIT)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from relay.limiter import RateLimiter
from tests.conftest import trigger
from tests.test_worker import ScriptedPagerDuty, make_worker, queue, stats
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
