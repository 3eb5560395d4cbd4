"""The adaptive per-key limit (PagerDuty's dynamic throttling), with fakeredis[lua]."""

from __future__ import annotations

import logging
from dataclasses import replace

import fakeredis
import pytest

from relay.errors import RetryLater
from relay.keys import key_id
from relay.limiter import RateLimiter
from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings
from relay.status import read_status
from tests.conftest import trigger
from tests.test_worker import ScriptedPagerDuty, drain, make_worker, queue

NAMES = Names()


@pytest.fixture
def tight(settings: Settings) -> Settings:
    return replace(settings, rate_per_min=40)


def limiter(settings: Settings, fake: fakeredis.FakeRedis) -> RateLimiter:
    kid = key_id(settings.routing_keys[0])
    return RateLimiter(Scripts(fake), NAMES.window(kid), NAMES.throttle(kid),
                       settings.rate_per_min, settings.rate_window_ms)


def limit_now(settings: Settings, fake: fakeredis.FakeRedis) -> int:
    return int(read_status(fake, NAMES, settings)[0]["rate_limit"])


def age_cut(fake: fakeredis.FakeRedis, settings: Settings, windows: float) -> None:
    """Pretend the last 429 came ``windows`` rate windows earlier than it did."""
    throttle = NAMES.throttle(key_id(settings.routing_keys[0]))
    at = int(fake.hget(throttle, "at"))
    fake.hset(throttle, "at", at - int(windows * settings.rate_window_ms))


def test_without_a_429_the_limit_is_the_configured_one(tight, fake) -> None:
    rate = limiter(tight, fake)
    assert [rate.try_acquire() for _ in range(40)] == [0] * 40
    assert rate.try_acquire() > 0
    assert limit_now(tight, fake) == 40


def test_a_429_cuts_the_limit_to_three_quarters_of_what_pagerduty_took(tight, fake) -> None:
    rate = limiter(tight, fake)
    for _ in range(21):  # PagerDuty took 20, then answered the 21st with 429
        assert rate.try_acquire() == 0
    assert rate.throttled() == 15
    assert limit_now(tight, fake) == 15
    wait = rate.try_acquire()  # 21 sent in the window: over the new limit of 15
    climb_s = 10 * tight.rate_window_ms / 40 / 1000
    assert 0 < wait <= climb_s + 0.001  # looks again once the limit has climbed by one


def test_a_cut_never_goes_below_a_tenth_of_the_configured_limit(tight, fake) -> None:
    rate = limiter(tight, fake)
    assert rate.try_acquire() == 0
    assert rate.throttled() == 4  # PagerDuty took nothing: throttled for another reason
    age_cut(fake, tight, 1)
    assert rate.throttled() == 4  # cut again from 8 (4 + a climb of 4): the floor holds


def test_the_limit_climbs_back_a_tenth_per_window_up_to_the_configured_one(tight, fake) -> None:
    rate = limiter(tight, fake)
    for _ in range(21):
        rate.try_acquire()
    rate.throttled()
    age_cut(fake, tight, 2)
    assert limit_now(tight, fake) == 15 + 2 * 4
    age_cut(fake, tight, 100)
    assert limit_now(tight, fake) == 40
    fake.delete(NAMES.window(key_id(tight.routing_keys[0])))
    assert [rate.try_acquire() for _ in range(40)] == [0] * 40


def test_one_cut_per_window_and_the_next_starts_from_the_limit_reached(tight, fake) -> None:
    rate = limiter(tight, fake)
    for _ in range(33):
        rate.try_acquire()
    assert rate.throttled() == 24  # 3/4 of the 32 PagerDuty took
    assert rate.throttled() == 24  # a second 429 within the window does not compound it
    age_cut(fake, tight, 1)  # a window later the limit has climbed by 4, to 28
    assert rate.throttled() == 21  # 3/4 of the limit reached, below what the window holds


def test_a_worker_cuts_its_keys_limit_on_429_and_logs_it_by_name(tight, fake, caplog) -> None:
    key = tight.routing_keys[0]
    queue(fake, key, trigger(dedup_key="a"), trigger(dedup_key="b"))
    pd = ScriptedPagerDuty(["ok", RetryLater("HTTP 429", 429)])
    with caplog.at_level(logging.WARNING):
        drain(make_worker(tight, fake, pd))
    assert [body["dedup_key"] for _, body in pd.sent] == ["a", "b", "b"]
    assert limit_now(tight, fake) == 4
    assert "key key-1: PagerDuty throttles; sending at most 4 per 61s" in caplog.text
    assert key not in caplog.text
    assert limit_now(replace(tight, routing_keys=tight.routing_keys[1:]), fake) == 40


def test_paced_sends_spread_over_the_window_and_leave_room_for_urgent_ones(tight, fake) -> None:
    """Storm mode: lesser events may go ``burst`` at once, then one per spacing (window /
    limit); a critical one is not paced, and the window's limit holds for both."""
    rate = limiter(tight, fake)
    spacing_s = tight.rate_window_ms / 40 / 1000
    assert [rate.try_acquire(burst=3) for _ in range(3)] == [0, 0, 0]
    wait = rate.try_acquire(burst=3)
    assert 0 < wait <= 3 * spacing_s + 0.001  # until the first of the three is old enough
    assert rate.try_acquire() == 0  # a critical event goes at once
    assert rate.try_acquire(burst=3) > 0
    assert [rate.try_acquire() for _ in range(36)] == [0] * 36  # 40 in the window
    assert rate.try_acquire() > 0


def test_a_storm_mode_worker_paces_lesser_events_only(settings, fake) -> None:
    key = settings.routing_keys[0]
    queue(fake, key, trigger("info", dedup_key="i", payload={
        "summary": "s", "source": "h", "severity": "info"}), trigger("crit", dedup_key="c"))
    bursts: list[int] = []
    worker = make_worker(settings, fake, ScriptedPagerDuty())
    worker.limiter.acquire = lambda sleep, burst=0: bursts.append(burst)  # type: ignore[method-assign]
    drain(worker)
    assert bursts == [0, 10]  # the critical one first, unpaced; then the info one, paced
    off = make_worker(replace(settings, storm_mode="off"), fake, ScriptedPagerDuty())
    off.limiter.acquire = lambda sleep, burst=0: bursts.append(burst)  # type: ignore[method-assign]
    queue(fake, key, trigger("info", dedup_key="i2", payload={
        "summary": "s", "source": "h", "severity": "info"}))
    drain(off)
    assert bursts[2:] == [0]
