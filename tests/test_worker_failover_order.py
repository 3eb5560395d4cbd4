"""A failover may roll back the primary's last writes no replica had (issue 27): a
FINISH, the next event's move in flight. A worker retrying an event (its WAIT fell
short, or PagerDuty asked to retry) must not then send it while the new primary shows
another event at the in-flight head: that earlier event is sent again first (a
duplicate), never after a later one of its incident (a resolve, then its trigger again,
reopens the incident: a false page)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis

from tests.conftest import trigger
from tests.test_worker import ScriptedPagerDuty, make_worker, queue, waiting
from worker.delivery import LeaseLost
from worker.lease import Lease


def snapshot(fake: fakeredis.FakeRedis) -> dict[str, tuple[bytes, int]]:
    return {key: (fake.dump(key), max(0, fake.pttl(key))) for key in fake.keys("*")}


def restore(fake: fakeredis.FakeRedis, state: dict[str, tuple[bytes, int]]) -> None:
    fake.flushall()
    for key, (data, ttl) in state.items():
        fake.restore(key, ttl, data)


def test_a_retry_after_a_rollback_never_overtakes_the_head(settings, fake, monkeypatch) -> None:
    key = settings.routing_keys[0]
    settings = replace(settings, min_replicas=1, replica_timeout_ms=300)
    queue(fake, key, trigger("opened", dedup_key="inc"),
          {**trigger("closed", dedup_key="inc"), "event_action": "resolve"})
    replica: dict[str, Any] = {}
    answers = iter([1, 0])  # the trigger's WAIT confirms; the resolve's first falls short

    def confirmed(self: Lease, replicas: int, timeout_ms: int) -> tuple[bool, int]:
        ours, answer = self.renew(), next(answers, 1)
        if answer and not replica:
            replica.update(snapshot(fake))  # what the replica holds: the trigger in flight
        return ours, answer

    sleeps: list[float] = []

    def failover(seconds: float) -> None:
        sleeps.append(seconds)
        restore(fake, replica)  # the replica becomes the primary: the FINISH is gone

    monkeypatch.setattr(Lease, "renew_confirmed", confirmed)
    pd = ScriptedPagerDuty()
    worker = make_worker(settings, fake, pd)
    worker._sleep = failover  # type: ignore[assignment]
    assert worker.lease.acquire()
    for _ in range(6):
        if not fake.llen(worker.inflight) and not waiting(fake, worker.kid):
            break
        try:
            worker.step()
        except LeaseLost:
            pass  # the fleet's loop steps again
    actions = [body["event_action"] for _, body in pd.sent]
    assert sleeps, ("the rollback was not staged", pd.sent)
    assert actions[-1] == "resolve", actions
    assert actions == sorted(actions, key=["trigger", "resolve"].index), actions
