"""The second review's fixes of the heartbeats (issue 28): what a stored run-time check
may say, pause of a name that is no check, a name's leftovers when it is added again,
what a ping's body costs in Redis, and the incident of a check gone from the routes
file. On fakeredis and a real redis-server, with a test's clock."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from relay.heartbeats.codec import check_to_json
from relay.heartbeats.store import VERSION, Heartbeats
from tests.heartbeat_fixtures import (
    NAMES,
    Clock,
    clock,
    period_check,
    real_redis,
    redis_client,
    store,
)

__all__ = ["clock", "real_redis", "redis_client", "store"]  # fixtures


@pytest.mark.parametrize("fields", [
    {"period_s": 1e12}, {"period_s": 0.5}, {"grace_s": 1e12}, {"grace_s": 0},
    {"tz": "Mars/Base"}, {"name": "start"}, {"severity": "loud"},
    {"period_s": None, "cron": "61 * * * *"}, {"period_s": None, "cron": None}])
def test_a_stored_check_out_of_range_is_left_out_and_said(
        store: Heartbeats, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
        fields: dict[str, object]) -> None:
    good = period_check("fine", origin="cli")
    record = json.loads(check_to_json(period_check("bad", origin="cli"), VERSION))
    record.update(fields)
    redis_client.hset(NAMES.heartbeats, mapping={
        "bad": json.dumps(record), "fine": check_to_json(good, VERSION)})
    with caplog.at_level(logging.WARNING):
        assert store.stored_checks() == [good]
    assert "heartbeat bad: run-time check not read" in caplog.text


def test_pausing_a_name_the_store_does_not_know_writes_nothing(
        store: Heartbeats, redis_client: redis.Redis) -> None:
    assert store.pause("nope") is False
    assert redis_client.exists(NAMES.heartbeat("nope")) == 0  # no orphan state hash
    assert store.resume("nope") is False
    assert redis_client.exists(NAMES.heartbeat("nope")) == 0
    assert store.pause("nightly", in_file=True) is True  # a routes-file check, never pinged
    assert store.states([period_check("nightly")])[0].state == "paused"
    store.add(period_check("added", origin="cli"))
    assert store.pause("added") is True  # a run-time check, never pinged


def test_adding_a_name_again_starts_clean(store: Heartbeats, redis_client: redis.Redis,
                                          clock: Clock) -> None:
    old = period_check("backup")  # a routes-file check, then taken out of the file
    token = store.new_token("backup")
    store.ping(old, "fail", body=b"old news")  # down, its incident open
    [(raw, _)] = store.pages(10)
    store.page_done(raw)
    clock.advance(5)
    again = period_check("backup", origin="cli")
    assert store.add(again)
    assert not store.token_matches("backup", token) and not store.has_token("backup")
    state = store.states([again])[0]
    assert (state.state, state.outages, state.last_ping_at) == ("new", 0, None)
    assert store.recent_pings("backup") == []
    assert redis_client.zscore(NAMES.heartbeat_due, "backup") is None
    [(_, resolve)] = store.pages(10)  # the old incident is not left open for ever
    assert (resolve.action, resolve.outage, resolve.reason) == ("resolve", 1, "removed")
    store.ping(again, "fail")
    assert [(p.action, p.outage) for _, p in store.pages(10)][-1] == ("trigger", 1)


def test_a_removed_run_time_checks_token_is_gone(store: Heartbeats) -> None:
    check = period_check("job", origin="cli")
    store.add(check)
    token = store.new_token("job")
    assert store.remove("job")
    assert not store.has_token("job") and not store.token_matches("job", token)
    store.add(check)
    assert not store.token_matches("job", token)
