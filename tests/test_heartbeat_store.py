"""The checks' state in Redis (relay.heartbeats.store): pings in one script call, the
state after them, the pages they put in the outbox, pause and resume, tokens, run-time
checks and the last pings. On fakeredis and a real redis-server, with a test's clock."""

from __future__ import annotations

import pytest
import redis

from relay.errors import StoreFormatError
from relay.heartbeats.config import label_matcher
from relay.heartbeats.model import BODY_LIMIT, Check
from relay.heartbeats.store import KEEP_PINGS, SHORT_BYTES, Heartbeats
from relay.routes.channels import Use
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


def test_a_success_makes_a_new_check_up_and_says_when_the_next_is_due(
        store: Heartbeats) -> None:
    check = period_check(period_s=60, grace_s=30)
    assert store.states([check])[0].state == "new"
    answer = store.ping(check, "success")
    assert (answer.state, answer.expected_at, answer.down_at) == \
        ("up", START + 60, START + 90)
    state = store.states([check])[0]
    assert (state.state, state.last_ping_at, state.last_signal, state.since) == \
        ("up", START, "success", START)
    assert store.pages(10) == []


def test_a_fail_pages_at_once_and_once_and_the_next_success_resolves(
        store: Heartbeats, clock: Clock) -> None:
    check = period_check()
    store.ping(check, "success")
    clock.advance(10)
    assert store.ping(check, "fail", body=b"exit 3: disk full", exit_status=3).state == "down"
    clock.advance(1)
    assert store.ping(check, "fail").state == "down"  # no second incident
    assert store.ping(check, "start").state == "down"
    [(raw, trigger)] = store.pages(10)
    assert (trigger.action, trigger.reason, trigger.outage, trigger.at) == \
        ("trigger", "fail", 1, START + 10)
    assert trigger.details["last_body"] == "exit 3: disk full"
    assert trigger.details["exit_status"] == 3
    assert trigger.details["check"] == "backup"
    assert store.page_done(raw) and not store.page_done(raw)
    clock.advance(5)
    assert store.ping(check, "success").state == "up"
    [(_, resolve)] = store.pages(10)
    assert (resolve.action, resolve.outage, resolve.at) == ("resolve", 1, START + 16)
    assert store.states([check])[0].outages == 1


def test_a_start_waits_one_grace_for_its_success(store: Heartbeats, clock: Clock) -> None:
    check = period_check(period_s=60, grace_s=30)
    answer = store.ping(check, "start")  # on a new check: down at start + grace
    assert (answer.state, answer.down_at) == ("started", START + 30)
    clock.advance(20)
    assert store.ping(check, "success").down_at == START + 20 + 90
    clock.advance(70)  # 10 s late: a start now still goes down at expected + grace
    answer = store.ping(check, "start")
    assert (answer.state, answer.expected_at, answer.down_at) == \
        ("started", START + 80, START + 110)


def test_a_ping_to_a_paused_check_unpauses_it_and_resume_makes_it_new(
        store: Heartbeats, clock: Clock) -> None:
    check = period_check()
    assert store.pause("backup", in_file=True) is True  # a routes-file check never pinged
    assert store.states([check])[0].state == "paused"
    assert store.resume("backup") is True
    assert store.resume("backup") is False  # not paused
    store.ping(check, "success")
    assert store.pause("backup") is True
    state = store.states([check])[0]
    assert (state.state, state.expected_at, state.down_at) == ("paused", None, None)
    clock.advance(600)
    assert store.ping(check, "success").state == "up"
    store.pause("backup")
    assert store.resume("backup")
    state = store.states([check])[0]
    assert (state.state, state.last_ping_at) == ("new", None)
    assert store.pages(10) == []


def test_pausing_a_down_check_leaves_its_incident_open_till_a_success(
        store: Heartbeats, clock: Clock) -> None:
    check = period_check()
    store.ping(check, "fail")
    store.pause("backup")
    store.resume("backup")
    clock.advance(5)
    store.ping(check, "fail")  # the same outage: its incident is still open
    store.ping(check, "success")
    assert [(p.action, p.outage) for _, p in store.pages(10)] == \
        [("trigger", 1), ("resolve", 1)]


def test_the_last_pings_are_kept_capped_with_the_first_bytes_of_their_bodies(
        store: Heartbeats, clock: Clock) -> None:
    check = period_check()
    big = ("é" * BODY_LIMIT).encode()  # two bytes a character: cut inside one
    store.ping(check, "success", body=big, by="source backup-host")
    newest = store.recent_pings("backup", 1)[0]
    assert len(newest["body"].encode()) == BODY_LIMIT
    assert (newest["at"], newest["signal"], newest["by"]) == (START, "success",
                                                              "source backup-host")
    for n in range(KEEP_PINGS + 5):
        clock.advance(1)
        store.ping(check, "fail" if n % 2 else "success", body=b"x" * 50_000,
                   exit_status=n % 2 or None)
    pings = store.recent_pings("backup")
    assert len(pings) == KEEP_PINGS
    assert len(pings[0]["body"]) == BODY_LIMIT  # the newest: all it kept
    assert {len(p["body"]) for p in pings[1:]} == {SHORT_BYTES}  # the older: their first KB
    assert [p["at"] for p in pings] == [START + KEEP_PINGS + 5 - n for n in range(KEEP_PINGS)]
    assert pings[0]["exit_status"] is None and pings[1]["exit_status"] == 1


def test_a_body_that_is_not_utf8_is_kept_replaced(store: Heartbeats) -> None:
    store.ping(period_check(), "success", body=b"ok \xff\xfe")
    assert store.recent_pings("backup")[0]["body"] == "ok \ufffd\ufffd"


def test_a_ping_token_is_shown_once_and_only_its_hash_stored(
        store: Heartbeats, redis_client: redis.Redis) -> None:
    token = store.new_token("backup")
    assert len(token) >= 40 and token.startswith("pdh_")
    stored = redis_client.hget(NAMES.heartbeat_tokens, "backup")
    assert token not in str(stored) and str(stored).startswith("sha256:")
    assert store.token_matches("backup", token)
    assert not store.token_matches("backup", token + "x")
    assert not store.token_matches("other", token)
    again = store.new_token("backup")  # replaces the first
    assert store.token_matches("backup", again) and not store.token_matches("backup", token)


def test_run_time_checks_are_stored_read_and_removed(store: Heartbeats,
                                                     redis_client: redis.Redis) -> None:
    check = Check("nightly", grace_s=600, cron="30 2 * * *", tz="Europe/Berlin",
                  severity="error", summary="no backup", keys=("db",),
                  channels=(Use("ops-slack", "warning"),), sources=("backup-host",),
                  watchdog=(label_matcher('alertname="Watchdog"'),), origin="cli")
    assert store.add(check) and not store.add(check)
    assert store.stored_checks() == [check]
    assert '"v":1' in str(redis_client.hget(NAMES.heartbeats, "nightly"))
    store.new_token("nightly")
    store.ping(check, "success")
    assert store.remove("nightly") and not store.remove("nightly")
    assert store.stored_checks() == [] and not store.has_token("nightly")
    assert store.states([check])[0].state == "new" and store.recent_pings("nightly") == []
    assert redis_client.zscore(NAMES.heartbeat_due, "nightly") is None


def test_a_run_time_check_of_a_format_it_does_not_read_is_left_out(
        store: Heartbeats, redis_client: redis.Redis) -> None:
    redis_client.hset(NAMES.heartbeats, "future", '{"v": 2, "name": "future"}')
    assert store.stored_checks() == []


def test_a_check_whose_state_a_newer_release_wrote_is_refused(
        store: Heartbeats, redis_client: redis.Redis) -> None:
    redis_client.hset(NAMES.heartbeat("backup"), mapping={"v": 2, "state": "up"})
    with pytest.raises(StoreFormatError, match="format 2"):
        store.ping(period_check(), "success")


def test_a_cron_check_expects_its_next_scheduled_time(store: Heartbeats) -> None:
    # START is 2027-01-15T08:00:00Z: the next "30 * * * *" is 08:30
    check = Check("hourly", grace_s=60, cron="30 * * * *", keys=("ops",))
    answer = store.ping(check, "success")
    assert (answer.expected_at, answer.down_at) == (START + 1800, START + 1860)


def test_the_ingress_mark_carries_redis_time_and_lapses(store: Heartbeats,
                                                        redis_client: redis.Redis) -> None:
    store.mark_ingress(5)
    assert int(str(redis_client.get(NAMES.heartbeat_ingress))) == START * 1000
    assert 0 < redis_client.pttl(NAMES.heartbeat_ingress) <= 5000


def test_an_unknown_signal_is_refused(store: Heartbeats) -> None:
    with pytest.raises(ValueError, match="signal"):
        store.ping(period_check(), "log")


def test_production_pings_use_redis_clock(redis_client: redis.Redis) -> None:
    plain = Heartbeats(redis_client, NAMES)
    answer = plain.ping(period_check(period_s=60), "success")
    redis_now = redis_client.time()[0]
    assert answer.expected_at is not None and abs(answer.expected_at - 60 - redis_now) < 5
