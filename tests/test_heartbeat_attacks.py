"""The review's attacks on the heartbeats' state machine and pages (issue 28): each test
failed before the fix that follows it. On fakeredis and a real redis-server; the clock
is the test's (it stands for Redis's)."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from relay.heartbeats import store as store_module
from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check
from relay.heartbeats.schedule import cron_times, expected_after
from relay.heartbeats.store import Heartbeats
from relay.routes.config import RoutesFile
from tests.heartbeat_fixtures import (
    NAMES,
    Clock,
    clock,
    period_check,
    real_redis,
    redis_client,
    store,
)
from tests.test_heartbeat_evaluator import Sent

__all__ = ["clock", "real_redis", "redis_client", "store"]  # fixtures
CHECK = period_check("backup", period_s=60, grace_s=30)


def evaluator(client: redis.Redis, clock: Clock, sent: Sent, catalog: Catalog,
              **options: object) -> Evaluator:
    return Evaluator(client, NAMES, catalog, sent, clock=clock,  # type: ignore[arg-type]
                     watch_ingress=False, gap_s=1e6, **options)


def test_a_page_of_a_run_time_check_the_catalog_has_not_read_yet_is_sent(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # a worker's first rounds, or the 2 s after `pd-relay heartbeat add`: the evaluator's
    # catalog has not read the run-time check the ingress already knows and pinged
    runtime = Check("nightly", grace_s=30, period_s=60, keys=("ops",), origin="cli")
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, Catalog(RoutesFile(), store))
    ev.round()
    assert store.add(runtime)
    store.ping(runtime, "fail")
    ev.round()
    assert sent.pages == [("nightly", "trigger", 1, "fail")]


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_cron_times_are_after_the_ping_all_through_both_nights_the_clocks_change() -> None:
    # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00
    # CET. A nightly job at 02:30 CEST that takes 40 minutes pings at 02:10 CET (01:10
    # UTC, the repeated hour's second pass): the next run is expected the next night, not
    # at 02:30 CEST of the same night (an hour before the ping: late at once, a false page)
    for expression in ("30 2 * * *", "0 2 * * *", "15,45 2 * * *", "*/7 * * * *",
                       "0 * * * *", "59 1 * * *"):
        for start in (at(2026, 3, 28, 23), at(2026, 10, 24, 23)):
            for minute in range(0, 4 * 60):
                ping = start + minute * 60 + 30
                times = cron_times(expression, "Europe/Berlin", ping, 3)
                assert ping < times[0] < times[1] < times[2], (expression, ping, times)
                check = Check("nightly", grace_s=60, cron=expression, tz="Europe/Berlin")
                assert expected_after(check, ping) == times[0]


def test_a_flapping_check_does_not_grow_the_outbox_without_bound(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # promise 8: a sender pinging fail, success, fail, ... while the pages wait (a full
    # queue, no evaluator) pushed a trigger and a resolve each time, without end. Each
    # check keeps at most its open incident's trigger and resolve beyond what a deliverer
    # may be sending; what PagerDuty is told still ends as the check stands
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, Catalog(RoutesFile(heartbeats=(CHECK,)), None))
    ev.round()
    for _ in range(400):
        clock.advance(0.01)
        store.ping(CHECK, "fail")
        clock.advance(0.01)
        store.ping(CHECK, "success")
    clock.advance(0.01)
    store.ping(CHECK, "success")  # the last evaluation round's transitions too: missed
    clock.advance(91)
    ev.evaluate()
    assert redis_client.llen(NAMES.heartbeat_pages) <= store_module.IN_FLIGHT + 2
    while ev.round():
        pass
    actions = [action for _, action, _, _ in sent.pages]
    assert actions == ["trigger", "resolve"] * (len(actions) // 2) + ["trigger"]
    outages = [outage for _, _, outage, _ in sent.pages]
    assert outages == sorted(outages) and store.states([CHECK])[0].state == "down"
    assert store.states([CHECK])[0].outages == outages[-1]
    store.ping(CHECK, "success")
    ev.round()
    assert sent.pages[-1] == ("backup", "resolve", outages[-1], "")


def test_a_schedule_changed_in_the_routes_file_counts_from_the_last_ping_at_once(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # the routes file moved a job from every minute to hourly (a restart with the new
    # file), while the check was up: its deadline stayed the old period's, a false page
    # 90 s after the last ping. And hourly to every minute: the missed deadline paged an
    # hour late. As healthchecks.io, a changed period, cron or grace applies at once,
    # counted from the last ping.
    minute = period_check("backup", period_s=60, grace_s=30)
    hourly = period_check("backup", period_s=3600, grace_s=30)
    sent = Sent()
    first = evaluator(redis_client, clock, sent, Catalog(RoutesFile(heartbeats=(minute,)),
                                                         None))
    first.round()
    pinged = clock()
    store.ping(minute, "success")
    first.release()  # the relay restarts with the new routes file
    again = evaluator(redis_client, clock, sent, Catalog(RoutesFile(heartbeats=(hourly,)),
                                                         None))
    for _ in range(60):
        clock.advance(10)
        again.round()
    state = store.states([hourly])[0]
    assert sent.pages == [] and state.state == "up"
    assert (state.expected_at, state.down_at) == (pinged + 3600, pinged + 3630)
    again.release()
    back = evaluator(redis_client, clock, sent, Catalog(RoutesFile(heartbeats=(minute,)),
                                                        None))
    back.round()  # 600 s after the last ping: the minute's deadline passed long ago
    assert sent.pages == [("backup", "trigger", 1, "missed")]


def test_many_checks_down_at_once_are_all_paged_in_one_round(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # 250 nightly jobs of one schedule whose shared server died: the evaluator handed on
    # 100 pages a round (a round a second), the last paged 2 s late (10,000: 100 s), far
    # past issue 28's 5 s
    checks = tuple(period_check(f"job{n}") for n in range(250))
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, Catalog(RoutesFile(heartbeats=checks), None))
    ev.round()
    for check in checks:
        store.ping(check, "fail")
    ev.round()
    assert len(sent.pages) == 250 and store.pages(1) == []


def test_a_round_hands_pages_on_for_about_its_interval_then_evaluates_again(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    checks = tuple(period_check(f"job{n}") for n in range(250))
    sent = Sent()
    ticks = Clock(0.0)

    def slow() -> float:  # each reading 0.2 s later: a batch of pages takes 20 s
        ticks.advance(0.2)
        return ticks()

    ev = evaluator(redis_client, clock, sent, Catalog(RoutesFile(heartbeats=checks), None),
                   monotonic=slow, lease_ttl_s=10_000, batch=100)
    ev.round()
    for check in checks:
        store.ping(check, "fail")
    ev.round()
    assert len(sent.pages) == 100  # one batch, then the round ends
    ev.round()
    ev.round()
    assert len(sent.pages) == 250 and store.pages(1) == []


def test_a_check_removed_while_down_resolves_and_its_name_pages_again_when_re_added(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # `pd-relay heartbeat remove` of a down check dropped its state and left its incident
    # open, the relay's (no sender may resolve it); the check added again under its name
    # then went down as outage 1 again: a trigger on that still-open incident, which
    # PagerDuty takes as a repeat and pages nobody
    nightly = Check("nightly", grace_s=30, period_s=60, keys=("ops",), origin="cli")
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, Catalog(RoutesFile(), store))
    ev.round()
    assert store.add(nightly)
    store.ping(nightly, "fail")
    ev.round()
    assert store.remove("nightly")
    ev.round()
    assert sent.pages == [("nightly", "trigger", 1, "fail"), ("nightly", "resolve", 1, "removed")]
    assert store.add(nightly)
    store.ping(nightly, "success")
    clock.advance(91)
    ev.round()
    assert sent.pages[2:] == [("nightly", "trigger", 1, "missed")]  # after its resolve


def test_a_cron_checks_next_time_does_not_depend_on_this_hosts_clock(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # the ping computed the cron's next times from this host's clock (a minute back):
    # an ingress host two minutes fast, a job pinging at 10:59:30 (Redis's time) for its
    # 11:00 run was next expected at 12:00, so a missed 11:00 run paged an hour late
    hourly = Check("hourly", grace_s=60, cron="0 * * * *", keys=("ops",))
    clock.at = at(2027, 1, 15, 10, 59, 30)
    store.local_now = lambda: clock() + 120  # type: ignore[method-assign]
    ev = evaluator(redis_client, clock, Sent(), Catalog(RoutesFile(heartbeats=(hourly,)),
                                                         None))
    ev.round()
    store.ping(hourly, "success")
    ev.round()
    assert store.states([hourly])[0].expected_at == at(2027, 1, 15, 11)
