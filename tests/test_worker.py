"""The delivery loop with fakeredis[lua] and a scripted PagerDuty: no sleeping, no network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import fakeredis
import pytest

from relay.deadletters import DeadLetters
from relay.errors import KeyBlocked, Rejected, RetryLater
from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from relay.store import Record
from tests.conftest import trigger
from worker.delivery import LeaseLost, Shutdown, Worker

NAMES = Names()


class ScriptedPagerDuty:
    """Answers each send with the next scripted outcome (an exception or "ok")."""

    def __init__(self, outcomes: list[Any] | None = None) -> None:
        self.outcomes: Iterator[Any] = iter(outcomes or [])
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, kind: str, body: bytes) -> str:
        self.sent.append((kind, json.loads(body)))
        outcome = next(self.outcomes, "ok")
        if isinstance(outcome, BaseException):
            raise outcome
        return '{"status":"success"}'


def make_worker(settings: Settings, fake: fakeredis.FakeRedis, pd: ScriptedPagerDuty,
                sleeps: list[float] | None = None, key: str | None = None,
                worker_id: str = "w1") -> Worker:
    record = sleeps if sleeps is not None else []
    worker = Worker(settings, key or settings.routing_keys[0], fake, pagerduty=pd,  # type: ignore[arg-type]
                    sleep=record.append, worker_id=worker_id)
    # The lease's own clock stands still: a slow machine (a renewal taking 0.6 s of the
    # test settings' 1 s lease, seen in CI) must not make the fence refuse a send. The
    # fence's time bound has its tests on a clock they move (holder_on_a_clock).
    worker.lease.clock = lambda: 0.0
    return worker


def queue(fake: fakeredis.FakeRedis, key: str, *events: dict[str, Any]) -> None:
    fake.rpush(NAMES.queue(key_id(key)),
               *[Record("alert", event, 1000 + n).encode() for n, event in enumerate(events)])


def drain(worker: Worker) -> None:
    assert worker.lease.acquire()
    while waiting(worker.client, worker.kid) or worker.client.llen(worker.inflight):
        worker.step()


def waiting(client: Any, kid: str) -> int:
    """Events of the key waiting in its arrival list and lanes (gaps aside)."""
    return sum(1 for name in NAMES.waiting(kid) for raw in client.lrange(name, 0, -1) if raw)


def stats(fake: fakeredis.FakeRedis, key: str) -> dict[str, str]:
    return fake.hgetall(NAMES.stats(key_id(key)))


def test_events_leave_in_acceptance_order_with_their_routing_key(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, *[trigger(f"n{n}", dedup_key=f"d{n}") for n in range(5)])
    pd = ScriptedPagerDuty()
    drain(make_worker(settings, fake, pd))
    assert [body["dedup_key"] for _, body in pd.sent] == [f"d{n}" for n in range(5)]
    assert all(body["routing_key"] == key for _, body in pd.sent)
    assert stats(fake, key)["delivered"] == "5"


def test_retryable_errors_retry_the_same_event_and_later_ones_wait(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="first"), {"event_action": "resolve", "dedup_key": "first"})
    pd = ScriptedPagerDuty([
        RetryLater("HTTP 502", 502), RetryLater("HTTP 429", 429),
        RetryLater("timeout: ReadTimeout"), RetryLater("connection error"),
    ])
    sleeps: list[float] = []
    drain(make_worker(settings, fake, pd, sleeps))
    actions = [body["event_action"] for _, body in pd.sent]
    assert actions == ["trigger"] * 5 + ["resolve"]
    assert len(sleeps) == 4
    assert all(0 <= s <= settings.retry_max_s for s in sleeps)
    figures = stats(fake, key)
    assert figures["retried"] == "4" and figures["throttled"] == "1"
    assert figures["delivered"] == "2"
    assert "connection error" in figures["last_error"]


def test_retry_never_gives_up(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="stubborn"))
    pd = ScriptedPagerDuty([RetryLater("HTTP 500", 500)] * 200)
    sleeps: list[float] = []
    drain(make_worker(replace(settings, retry_max_s=30, rate_per_min=1000), fake, pd, sleeps))
    assert len(pd.sent) == 201 and len(sleeps) == 200
    assert max(sleeps) <= 30 and sum(sleeps) > 30  # backoff grew, and stayed capped


def test_retry_after_is_honoured_and_capped(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger())
    pd = ScriptedPagerDuty([RetryLater("HTTP 429", 429, retry_after=42),
                            RetryLater("HTTP 503", 503, retry_after=10_000)])
    sleeps: list[float] = []
    drain(make_worker(replace(settings, retry_after_max_s=120), fake, pd, sleeps))
    assert sleeps == [42, 120]


def test_a_rejected_event_is_dead_lettered_and_the_key_moves_on(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="bad"), trigger(dedup_key="good"))
    reply = '{"status":"invalid event","message":"Event object is invalid","errors":["x"]}'
    pd = ScriptedPagerDuty([Rejected("HTTP 400", 400, reply)])
    drain(make_worker(settings, fake, pd))
    assert [body["dedup_key"] for _, body in pd.sent] == ["bad", "good"]
    store = DeadLetters(fake, NAMES, settings.routing_keys)
    [summary] = store.list()
    assert summary["status"] == 400 and "bad" in summary["event"]
    assert key not in str(summary)
    letter = store.get(summary["id"])
    assert letter is not None and letter["reply"] == reply
    assert letter["event"]["dedup_key"] == "bad" and "routing_key" not in letter["event"]
    assert stats(fake, key)["dead_letters"] == "1"

    assert store.replay(summary["id"]) == "replayed"
    assert store.list() == [] and stats(fake, key)["dead_letters"] == "0"
    drain(make_worker(settings, fake, pd))
    assert pd.sent[-1][1]["dedup_key"] == "bad"
    assert store.replay(summary["id"]) == "missing"


def test_purge_drops_a_dead_letter(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger())
    drain(make_worker(settings, fake, ScriptedPagerDuty([Rejected("HTTP 400", 400)])))
    store = DeadLetters(fake, NAMES, settings.routing_keys)
    [dead_id] = store.ids()
    assert store.purge(dead_id) == "purged"
    assert store.list() == [] and fake.llen(NAMES.queue(key_id(key))) == 0


def test_a_crashed_workers_in_flight_event_is_sent_first(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="was-in-flight"), trigger(dedup_key="next"))
    kid = key_id(key)
    fake.lmove(NAMES.queue(kid), NAMES.inflight(kid), "LEFT", "RIGHT")  # the crash point
    pd = ScriptedPagerDuty()
    drain(make_worker(settings, fake, pd, worker_id="restarted"))
    assert [body["dedup_key"] for _, body in pd.sent] == ["was-in-flight", "next"]


def test_only_the_lease_holder_sends(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger())
    active = make_worker(settings, fake, ScriptedPagerDuty(), worker_id="active")
    standby_pd = ScriptedPagerDuty()
    standby = make_worker(settings, fake, standby_pd, worker_id="standby")
    assert active.lease.acquire()
    assert not standby.lease.acquire()
    fake.delete(NAMES.lease(key_id(key)))  # the holder's lease lapsed
    assert standby.lease.acquire()
    standby.step()
    assert len(standby_pd.sent) == 1
    assert not active.lease.renew()


def test_finishing_without_the_lease_leaves_the_event_for_the_holder(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger())
    pd = ScriptedPagerDuty()
    worker = make_worker(settings, fake, pd)
    assert worker.lease.acquire()
    send = pd.send

    def send_then_lose_the_lease(kind: str, body: bytes) -> str:
        fake.set(NAMES.lease(key_id(key)), "someone-else")  # lapsed and taken mid-send
        return send(kind, body)

    pd.send = send_then_lose_the_lease  # type: ignore[method-assign]
    worker.step()
    assert len(pd.sent) == 1
    assert fake.llen(NAMES.inflight(key_id(key))) == 1
    assert "delivered" not in stats(fake, key)


def test_shutdown_mid_send_leaves_the_event_in_flight(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="interrupted"))
    pd = ScriptedPagerDuty([Shutdown()])
    worker = make_worker(settings, fake, pd)
    assert worker.lease.acquire()
    with pytest.raises(Shutdown):
        worker.step()
    inflight = fake.lrange(NAMES.inflight(key_id(key)), 0, -1)
    assert [Record.decode(raw).event["dedup_key"] for raw in inflight] == ["interrupted"]


DEEP = '{"t":1,"k":"alert","e":{"event_action":"trigger","x":' + "[" * 5000 + "]" * 5000 + "}}"


@pytest.mark.parametrize("raw", ["not json", '{"t":1,"k":"alert","e":[1]}', '{"t":1}',
                                 '{"t":"x","k":"alert","e":{}}', '{"t":1,"k":"x","e":{}}',
                                 DEEP])  # deeper than Python's decoder goes (issue 24, 6)
def test_an_unreadable_stored_event_is_dead_lettered(settings, fake, raw: str) -> None:
    key = settings.routing_keys[0]
    fake.rpush(NAMES.queue(key_id(key)), raw)
    queue(fake, key, trigger(dedup_key="next"))
    pd = ScriptedPagerDuty()
    drain(make_worker(settings, fake, pd))
    [summary] = DeadLetters(fake, NAMES, settings.routing_keys).list()
    assert "unreadable" in summary["reason"]
    assert [body["dedup_key"] for _, body in pd.sent] == ["next"]


def test_the_limiter_holds_every_worker_of_a_key_to_the_limit(settings, fake) -> None:
    key = settings.routing_keys[0]
    tight = replace(settings, rate_per_min=3)
    one = make_worker(tight, fake, ScriptedPagerDuty(), worker_id="one")
    two = make_worker(tight, fake, ScriptedPagerDuty(), worker_id="two")
    waits = [w.limiter.try_acquire() for w in (one, two, one, two, one)]
    assert waits[:3] == [0, 0, 0]
    assert all(55 < wait <= 60.601 for wait in waits[3:])
    other = make_worker(tight, fake, ScriptedPagerDuty(), key=settings.routing_keys[1])
    assert other.limiter.try_acquire() == 0
    assert key  # the first key's window is full, the second key's is not


def test_deliveries_feed_status_and_the_latency_histogram(settings, fake) -> None:
    from relay.metrics import Metrics
    from relay.status import read_status

    key = settings.routing_keys[0]
    queue(fake, key, trigger(), trigger(), trigger())  # accepted long ago (t=1000 ms)
    drain(make_worker(settings, fake, ScriptedPagerDuty()))
    row = read_status(fake, NAMES, settings)[0]
    assert row["delivered"] == 3 and row["delivered_last_min"] == 3
    text = Metrics(fake, NAMES, settings).render()[0].decode()
    label = f'key="{settings.name_of(key)}"'
    assert f'pd_relay_delivery_latency_seconds_count{{{label}}} 3.0' in text
    assert f'pd_relay_delivery_latency_seconds_bucket{{{label},le="3600.0"}} 0.0' in text
    assert f'pd_relay_delivery_latency_seconds_bucket{{{label},le="+Inf"}} 3.0' in text


def test_an_event_a_stale_worker_moved_in_first_is_sent_first(settings, fake) -> None:
    """A lapsed holder's blocked BLMOVE lands between the new holder's LINDEX and BLMOVE:
    the holder still sends the in-flight list's head, not what its own move returned."""
    key = settings.routing_keys[0]
    kid = key_id(key)
    queue(fake, key, trigger(dedup_key="inc"), {"event_action": "resolve", "dedup_key": "inc"})
    pd = ScriptedPagerDuty()
    worker = make_worker(settings, fake, pd)
    own_move = worker.client.blmove

    def interleaved(*args: Any, **kwargs: Any) -> Any:
        fake.lmove(NAMES.queue(kid), NAMES.inflight(kid), "LEFT", "RIGHT")  # the stale move
        return own_move(*args, **kwargs)

    worker.client.blmove = interleaved  # type: ignore[method-assign]
    assert worker.lease.acquire()
    worker.step()
    worker.client.blmove = own_move  # type: ignore[method-assign]
    drain(worker)
    assert [body["event_action"] for _, body in pd.sent] == ["trigger", "resolve"]


def test_a_worker_whose_lease_was_taken_over_sends_nothing(settings, fake) -> None:
    """Its own view of the lease has not run out yet (no heartbeat came in between, as
    after a freeze), but another worker holds it now: no send starts."""
    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="stale"))
    pd = ScriptedPagerDuty()
    worker = make_worker(settings, fake, pd)
    assert worker.lease.acquire()
    fake.set(NAMES.lease(key_id(key)), "the-new-holder")  # lapsed and taken meanwhile
    with pytest.raises(LeaseLost):
        worker.step()
    assert pd.sent == []


def holder_on_a_clock(settings: Settings, fake: fakeredis.FakeRedis, dedup_key: str
                      ) -> tuple[Worker, ScriptedPagerDuty, list[float]]:
    """A worker holding a 10 s lease, on a clock the test moves (``now[0]``), with one event
    queued; a send may take 3 + 6 s."""
    queue(fake, settings.routing_keys[0], trigger(dedup_key=dedup_key))
    pd = ScriptedPagerDuty()
    now = [100.0]
    worker = make_worker(replace(settings, lease_ttl_s=10, connect_timeout_s=3,
                                 read_timeout_s=6), fake, pd)
    worker.lease.clock = lambda: now[0]
    assert worker.lease.acquire()
    return worker, pd, now


def test_no_send_starts_unless_the_lease_outlasts_it(settings, fake) -> None:
    """A send may take connect + read timeout: with less lease left than that on the
    worker's own clock, and no renewal to be had, it does not start."""
    worker, pd, now = holder_on_a_clock(settings, fake, "late")
    worker.lease.scripts.lease_renew = lambda **kwargs: 0  # Redis no longer renews it for us
    now[0] += 1.5  # 8.5 s left, a send may take 9
    with pytest.raises(LeaseLost):
        worker.step()
    assert pd.sent == []


def test_a_renewal_that_returns_too_late_starts_no_send(settings, fake) -> None:
    """Issue 24 (7): the lease is renewed, but the worker froze while the renewal was on
    its way (its own clock ran on), so less of the lease is surely left than a send may
    take: the send does not start, and the event stays for the next holder."""
    worker, pd, now = holder_on_a_clock(settings, fake, "frozen")
    renew = worker.lease.scripts.lease_renew

    def frozen_while_renewing(**kwargs: Any) -> Any:
        answer = renew(**kwargs)  # Redis renews it for the full TTL from now...
        now[0] += 1.5  # ...but the answer reaches a worker that was frozen 1.5 s
        return answer

    worker.lease.scripts.lease_renew = frozen_while_renewing
    with pytest.raises(LeaseLost, match="would lapse within a send"):
        worker.step()
    assert pd.sent == []
    assert fake.llen(worker.inflight) == 1  # still there, for whoever holds it


def test_an_event_that_cannot_be_sent_as_json_is_dead_lettered(settings, fake) -> None:
    """Stored before the ingress refused such numbers (or by hand): it cannot be
    serialised for PagerDuty, so it is dead-lettered and the key moves on."""
    from worker.pagerduty import PagerDuty

    key = settings.routing_keys[0]
    kid = key_id(key)
    fake.rpush(NAMES.queue(kid), '{"t":1,"k":"alert","e":{"event_action":"trigger",'
               '"dedup_key":"poison","payload":{"summary":"s","source":"h",'
               '"severity":"critical","custom_details":{"n":1e999}}}}')
    queue(fake, key, trigger(dedup_key="next"))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 20:
            raise Shutdown  # retrying it for ever: the defect

    pagerduty = PagerDuty("http://127.0.0.1:9", connect_timeout_s=0.2, read_timeout_s=0.2)
    worker = Worker(settings, key, fake, pagerduty=pagerduty, sleep=sleep, worker_id="w")
    assert worker.lease.acquire()
    worker.step()
    [summary] = DeadLetters(fake, NAMES, settings.routing_keys).list()
    assert "poison" in summary["event"] and "JSON" in summary["reason"]
    assert [Record.decode(raw).event["dedup_key"] for name in NAMES.waiting(kid)
            for raw in fake.lrange(name, 0, -1) if raw] == ["next"]


def test_a_misconfiguration_blocks_the_key_and_keeps_its_events(settings, fake, caplog) -> None:
    """A 404 (a wrong RELAY_PD_URL) is no verdict on the event: nothing is dead-lettered,
    the key waits the longest backoff between tries, and status says it is blocked."""
    from relay.status import read_status

    key = settings.routing_keys[0]
    queue(fake, key, trigger(dedup_key="first"), trigger(dedup_key="second"))
    blocked = KeyBlocked("HTTP 404", 404, "Not Found", hint="check RELAY_PD_URL")
    pd = ScriptedPagerDuty([blocked, blocked])
    sleeps: list[float] = []
    worker = make_worker(settings, fake, pd, sleeps)
    assert worker.lease.acquire()
    seen: list[dict[str, Any]] = []
    worker._note_retry = _spy(worker._note_retry, lambda: seen.append(  # type: ignore[method-assign]
        read_status(fake, NAMES, settings)[0]))
    drain(worker)
    assert [body["dedup_key"] for _, body in pd.sent] == ["first"] * 3 + ["second"]
    assert sleeps == [settings.retry_max_s] * 2
    assert DeadLetters(fake, NAMES, settings.routing_keys).list() == []
    assert "HTTP 404" in seen[-1]["blocked"] and "RELAY_PD_URL" in seen[-1]["blocked"]
    assert read_status(fake, NAMES, settings)[0]["blocked"] == ""  # unblocked by a delivery
    queue(fake, key, trigger(dedup_key="third"))
    worker.pagerduty = ScriptedPagerDuty([blocked, Rejected("HTTP 400", 400)])
    drain(worker)
    assert read_status(fake, NAMES, settings)[0]["blocked"] == ""  # a 400 is an answer too
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and "is blocked" in errors[0] and "check RELAY_PD_URL" in errors[0]


def _spy(inner: Any, after: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        result = inner(*args, **kwargs)
        after()
        return result
    return call


def test_a_worker_that_finds_its_lease_taken_says_it_lost_it(settings, fake, caplog) -> None:
    worker = make_worker(settings, fake, ScriptedPagerDuty())
    assert worker.lease.acquire()
    fake.set(worker.lease.lease_key, "another-worker")  # its lease lapsed; another took it
    with caplog.at_level("WARNING", logger="worker.lease"):
        assert not worker.lease.acquire()
    assert "lost the delivery lease" in caplog.text and worker.lease.remaining() == 0
