"""The evaluation rounds (relay.heartbeats.evaluator, the ROUND script): up -> late ->
down past expected + grace, one trigger per outage whoever evaluates, a ping exactly at
the deadline in time, the lease and its fence, the relay's own downtime. On fakeredis
and a real redis-server; the clock is the test's (it stands for Redis's)."""

from __future__ import annotations

import logging

import pytest
import redis

from relay.errors import QueueFull
from relay.heartbeats import store as store_module
from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check, Page
from relay.heartbeats.store import Heartbeats
from relay.routes.config import RoutesFile
from tests.heartbeat_fixtures import (
    NAMES,
    START,
    Clock,
    clock,
    period_check,
    real_redis,
    redis_client,
    store,
)

__all__ = ["clock", "real_redis", "redis_client", "store"]  # fixtures
CHECK = period_check("backup", period_s=60, grace_s=30)


class Sent:
    def __init__(self) -> None:
        self.pages: list[tuple[str, str, int, str]] = []
        self.fail = 0
        self.error: type[Exception] = RuntimeError

    def __call__(self, page: Page, check: Check) -> None:
        if self.fail:
            self.fail -= 1
            raise self.error("the event store said no")
        self.pages.append((page.name, page.action, page.outage, page.reason))


def evaluator(client: redis.Redis, clock: Clock, sent: Sent, *checks: Check,
              **options: object) -> Evaluator:
    catalog = Catalog(RoutesFile(heartbeats=checks or (CHECK,)), None)
    options.setdefault("watch_ingress", False)
    options.setdefault("gap_s", 1e6)  # the tests of the relay's own downtime set it
    return Evaluator(client, NAMES, catalog, sent, clock=clock, **options)  # type: ignore[arg-type]


def test_a_missed_deadline_goes_late_then_down_and_pages_once(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent)
    ev.round()  # the first round: the relay's start
    clock.advance(30)
    store.ping(CHECK, "success")  # expected at +60, down after +90
    clock.advance(60)
    ev.round()
    assert store.states([CHECK])[0].state == "up"  # exactly at the expected time: up
    clock.advance(0.001)
    ev.round()
    assert store.states([CHECK])[0].state == "late" and sent.pages == []
    clock.at = START + 30 + 90
    ev.round()  # exactly at expected + grace: still late
    assert store.states([CHECK])[0].state == "late" and sent.pages == []
    clock.advance(0.001)
    ev.round()
    state = store.states([CHECK])[0]
    assert (state.state, state.outages, state.since) == ("down", 1, START + 120.001)
    assert sent.pages == [("backup", "trigger", 1, "missed")]
    for _ in range(3):
        clock.advance(60)
        ev.round()
    assert len(sent.pages) == 1 and store.pages(10) == []
    store.ping(CHECK, "success")
    ev.round()
    assert sent.pages[1:] == [("backup", "resolve", 1, "")]


def test_the_trigger_carries_what_the_page_needs(redis_client: redis.Redis,
                                                 store: Heartbeats, clock: Clock) -> None:
    got: list[Page] = []
    ev = evaluator(redis_client, clock, Sent())
    ev.send = lambda page, check: got.append(page)
    ev.round()
    clock.advance(30)
    store.ping(CHECK, "success", body=b"backup of 3 GB done", exit_status=0)
    clock.advance(91)
    ev.round()
    [page] = got
    assert page.details == {
        "check": "backup", "reason": "missed", "last_ping_at": "2027-01-15T08:00:30.000Z",
        "expected_at": "2027-01-15T08:01:30.000Z", "late_by_s": 31.0,
        "last_body": "backup of 3 GB done", "exit_status": 0}
    assert page.at == START + 121


def test_a_ping_exactly_at_the_deadline_is_in_time(redis_client: redis.Redis,
                                                   store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent)
    ev.round()
    clock.advance(30)
    first = store.ping(CHECK, "success")
    assert first.down_at is not None
    clock.at = first.down_at
    ev.round()
    assert store.ping(CHECK, "success").state == "up"
    clock.advance(0.001)
    ev.round()
    assert sent.pages == [] and store.states([CHECK])[0].state == "up"


def test_a_start_without_its_success_within_grace_goes_down(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent)
    ev.round()
    clock.advance(30)
    store.ping(CHECK, "start")
    clock.advance(30)
    ev.round()
    assert store.states([CHECK])[0].state == "started"
    clock.advance(0.001)
    ev.round()
    assert sent.pages == [("backup", "trigger", 1, "started")]


def test_many_evaluators_page_once_for_one_outage(redis_client: redis.Redis,
                                                  store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    evaluators = [evaluator(redis_client, clock, sent) for _ in range(3)]
    evaluators[0].round()
    clock.advance(30)
    store.ping(CHECK, "success")
    clock.advance(91)
    for ev in evaluators:  # all evaluate (as if each thought itself the leaseholder)
        ev.evaluate()
    for ev in evaluators:
        ev.round()  # only the leaseholder hands pages on
    assert sent.pages == [("backup", "trigger", 1, "missed")]
    assert [bool(ev.remaining()) for ev in evaluators] == [True, False, False]


def test_a_process_that_lost_its_lease_sends_nothing(redis_client: redis.Redis,
                                                     store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    ticks = Clock(0.0)
    ev = evaluator(redis_client, clock, sent, monotonic=ticks, lease_ttl_s=3,
                   send_budget_s=1)
    other = evaluator(redis_client, clock, sent)
    ev.round()
    store.ping(CHECK, "fail")
    redis_client.set(NAMES.heartbeat_lease, other.holder)  # it lapsed; another took it
    assert ev.deliver() == 0 and sent.pages == []
    assert other.round() == 1 and sent.pages == [("backup", "trigger", 1, "fail")]


def test_a_send_starts_only_with_enough_of_the_lease_left(redis_client: redis.Redis,
                                                          store: Heartbeats,
                                                          clock: Clock) -> None:
    sent = Sent()
    ticks = Clock(0.0)

    def slow() -> float:  # a starved process: 2.5 s pass between two readings
        ticks.advance(2.5)
        return ticks()

    ev = evaluator(redis_client, clock, sent, monotonic=slow, lease_ttl_s=3,
                   send_budget_s=1)
    store.ping(CHECK, "fail")
    assert ev.round() == 0 and sent.pages == []
    assert len(store.pages(10)) == 1


def test_a_failed_send_keeps_the_order(redis_client: redis.Redis, store: Heartbeats,
                                       clock: Clock) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent)
    store.ping(CHECK, "fail")
    store.ping(CHECK, "success")
    sent.fail = 1
    assert ev.round() == 0
    assert ev.round() == 2
    assert sent.pages == [("backup", "trigger", 1, "fail"), ("backup", "resolve", 1, "")]


def test_a_full_queue_is_said_in_one_line_not_a_traceback_a_second(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    """A key's queue full holds the page at the head of the outbox, tried every round:
    a warning each time, never a traceback (the e2e fixtures fail a process that logs
    one, and an operator reads one as a defect)."""
    sent = Sent()
    sent.fail, sent.error = 2, QueueFull
    ev = evaluator(redis_client, clock, sent)
    store.ping(CHECK, "fail")
    with caplog.at_level(logging.WARNING):
        assert ev.round() == 0 and ev.round() == 0
    said = [r for r in caplog.records if "not handed on" in r.getMessage()]
    assert len(said) == 2 and all(r.exc_info is None for r in said)
    assert ev.round() == 1 and sent.pages == [("backup", "trigger", 1, "fail")]


def test_a_page_of_a_check_gone_is_dropped_and_said(redis_client: redis.Redis,
                                                    store: Heartbeats, clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, period_check("other"))
    store.ping(CHECK, "fail")
    with caplog.at_level(logging.WARNING):
        assert ev.round() == 0
    assert store.pages(10) == [] and "no such check any more" in caplog.text


def test_a_round_looks_at_a_bounded_number_of_checks_a_call(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    checks = [period_check(f"c{n}") for n in range(7)]
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, *checks, per_call=2, calls=2)
    ev.round()
    clock.advance(30)
    for check in checks:
        store.ping(check, "success")
    clock.advance(61)
    assert ev.evaluate() == 4  # 2 calls of 2
    assert sorted(s.state for s in store.states(checks)) == ["late"] * 4 + ["up"] * 3
    assert ev.evaluate() == 3
    assert {s.state for s in store.states(checks)} == {"late"}


def test_after_the_relay_was_down_every_check_gets_one_grace(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, gap_s=15)
    ev.round()
    clock.advance(30)
    store.ping(CHECK, "success")  # down after +90
    clock.advance(20)
    ev.round()
    clock.advance(200)  # no evaluation for 200 s: the relay was down
    with caplog.at_level(logging.WARNING):
        ev.round()
    assert "no evaluation for 200 s" in caplog.text
    assert store.states([CHECK])[0].state == "late" and sent.pages == []
    assert store.gap()["reason"] == "evaluator" and store.gap()["gap_s"] == 200
    back = clock()
    for _ in range(30):  # rounds every second again
        clock.advance(1)
        ev.round()
    assert clock() == back + 30 and sent.pages == []  # one grace after its return: in time
    clock.advance(0.001)
    ev.round()
    assert sent.pages == [("backup", "trigger", 1, "missed")]


def test_no_check_goes_down_while_no_ingress_can_take_pings(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, watch_ingress=True, gap_s=15)
    store.mark_ingress(10)
    ev.round()
    clock.advance(30)
    store.ping(CHECK, "success")
    redis_client.delete(NAMES.heartbeat_ingress)  # the ingress went away
    with caplog.at_level(logging.WARNING):
        for _ in range(200):
            clock.advance(1)
            ev.round()
    assert caplog.text.count("no ingress node can take pings") == 1
    assert sent.pages == [] and store.gap()["open"]
    store.mark_ingress(10)  # back at +230
    for _ in range(30):
        clock.advance(1)
        ev.round()
        store.mark_ingress(10)
    assert sent.pages == [] and not store.gap()["open"]
    clock.advance(1)
    ev.round()
    assert sent.pages == [("backup", "trigger", 1, "missed")]


def test_the_evaluator_fills_in_a_cron_checks_expected_time(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the ping script cannot run cronsim: given no next times, it leaves the expected
    # time to the evaluator's next round
    monkeypatch.setattr(store_module, "CRON_AHEAD", 0)
    check = Check("hourly", grace_s=60, cron="30 * * * *", keys=("ops",))
    ev = evaluator(redis_client, clock, Sent(), check)
    ev.round()
    answer = store.ping(check, "success")
    assert (answer.state, answer.expected_at) == ("up", None)
    ev.round()
    state = store.states([check])[0]
    assert (state.expected_at, state.down_at) == (START + 1800, START + 1860)
    assert redis_client.zscore(NAMES.heartbeat_due, "hourly") == (START + 1800) * 1000 + 1


def test_paused_and_new_checks_page_nothing(redis_client: redis.Redis, store: Heartbeats,
                                            clock: Clock) -> None:
    sent = Sent()
    other = period_check("other")
    ev = evaluator(redis_client, clock, sent, CHECK, other)
    ev.round()
    store.ping(CHECK, "success")
    store.pause("backup", in_file=True)
    for _ in range(10):
        clock.advance(60)
        ev.round()
    assert sent.pages == []
    assert [s.state for s in store.states([CHECK, other])] == ["paused", "new"]
