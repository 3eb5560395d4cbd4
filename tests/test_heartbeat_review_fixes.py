"""The second review's fixes of the heartbeats (issue 28): what a stored run-time check
may say, pause of a name that is no check, a name's leftovers when it is added again,
what a ping's body costs in Redis, and the incident of a check gone from the routes
file. On fakeredis and a real redis-server, with a test's clock."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from relay.heartbeats.catalog import Catalog
from relay.heartbeats.codec import check_to_json
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import BODY_LIMIT
from relay.heartbeats.store import KEEP_PINGS, SHORT_BYTES, VERSION, Heartbeats
from relay.heartbeats.sweep import GONE_AFTER_S
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
from tests.test_heartbeat_evaluator import CHECK, Sent, evaluator

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


WORST = {"nul": b"\0" * 20_000, "every byte": bytes(range(256)) * 80,
         "e-acute": "é".encode() * 10_000, "slash": b"/" * 20_000, "quote": b'"' * 20_000,
         "not utf-8": b"\xff" * 20_000, "ctl+text": b"\x01a\n/\xc3\xa9" * 4000}
OVERHEAD = 300  # the entry's other fields: at, signal, exit_status, by


@pytest.mark.parametrize("kind", sorted(WORST))
def test_what_a_ping_body_stores_is_bounded_in_redis(real_redis: redis.Redis,
                                                     kind: str) -> None:
    real_redis.flushall()
    store = Heartbeats(real_redis, NAMES, clock=Clock())
    check = period_check()
    pings = NAMES.heartbeat_pings("backup")
    store.ping(check, "success", body=WORST[kind], by="source " + "é/" * 200)
    newest = real_redis.lindex(pings, 0)
    assert len(str(newest).encode()) <= BODY_LIMIT + SHORT_BYTES + OVERHEAD
    for _ in range(KEEP_PINGS):
        store.ping(check, "fail", body=WORST[kind], exit_status=1)
    older = real_redis.lrange(pings, 1, -1)
    assert max(len(str(raw).encode()) for raw in older) <= SHORT_BYTES + OVERHEAD
    usage = real_redis.memory_usage(pings)
    assert usage is not None and usage <= 32_000, usage  # the ~32 KB a check documented
    [(_, page)] = store.pages(10)
    assert len(json.dumps(page.details["last_body"], ensure_ascii=False).encode()) \
        <= SHORT_BYTES + 2


def test_a_body_keeps_its_text_and_loses_only_control_characters(
        store: Heartbeats) -> None:
    text = 'line 1\n\tpath /var/"x" \\ é ✓\r\n'
    store.ping(period_check(), "success", body=(text + "\x00\x07\x1b[0m\x7f").encode())
    assert store.recent_pings("backup")[0]["body"] == text + "\ufffd\ufffd\ufffd[0m\ufffd"


def test_a_check_taken_out_of_the_routes_file_while_down_is_resolved_and_forgotten(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock,
        caplog: pytest.LogCaptureFixture) -> None:
    sent = Sent()
    before = evaluator(redis_client, clock, sent, CHECK, period_check("other"))
    store.ping(CHECK, "fail")
    store.new_token("backup")
    assert before.round() == 1 and sent.pages == [("backup", "trigger", 1, "fail")]
    before.release()
    after = evaluator(redis_client, clock, sent, period_check("other"))  # the file changed
    assert after.round() == 0  # first found gone: not yet (a rolling change may be on)
    clock.advance(GONE_AFTER_S - 1)
    assert after.round() == 0 and redis_client.exists(NAMES.heartbeat("backup"))
    clock.advance(2)
    with caplog.at_level(logging.WARNING):
        assert after.round() == 1
    assert sent.pages[-1] == ("backup", "resolve", 1, "removed")
    assert "heartbeat backup: no such check" in caplog.text
    assert not store.has_token("backup") and store.recent_pings("backup") == []
    assert redis_client.exists(NAMES.heartbeat("backup"), NAMES.heartbeat_gone) == 0
    assert not redis_client.sismember(NAMES.heartbeat_named, "backup")
    clock.advance(GONE_AFTER_S * 2)
    assert after.round() == 0 and len(sent.pages) == 2  # once


def test_a_run_time_check_the_catalog_has_not_read_yet_is_not_gone(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    ev = Evaluator(redis_client, NAMES, Catalog(RoutesFile(), store), sent, clock=clock,
                   watch_ingress=False, gap_s=1e6)
    ev.round()
    added = period_check("added", origin="cli")
    store.add(added)  # after the catalog's last read
    store.ping(added, "fail")
    ev.round()
    clock.advance(GONE_AFTER_S + 1)
    ev.round()
    assert redis_client.hlen(NAMES.heartbeat_gone) == 0
    assert sent.pages == [("added", "trigger", 1, "fail")]


def test_workers_with_different_routes_files_do_not_flap(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    sent = Sent()
    old = evaluator(redis_client, clock, sent, CHECK)  # a rolling change of the file
    new = evaluator(redis_client, clock, sent, period_check("other"))
    store.ping(CHECK, "fail")
    for _ in range(6):  # the lease goes from one to the other, 2/3 of the delay apart
        for ev in (old, new):
            ev.round()
            ev.release()
            clock.advance(GONE_AFTER_S * 2 / 3)
    assert sent.pages == [("backup", "trigger", 1, "fail")]  # never resolved as removed
    assert store.states([CHECK])[0].state == "down"


def test_the_sweep_looks_at_a_slice_a_round(redis_client: redis.Redis, store: Heartbeats,
                                            clock: Clock) -> None:
    sent = Sent()
    for n in range(200):  # a set of more than 128 names: no longer one listpack
        store.ping(period_check(f"c{n}"), "success")
    ev = evaluator(redis_client, clock, sent, period_check("other"), sweep_count=10)
    ev.round()
    assert 0 < redis_client.hlen(NAMES.heartbeat_gone) < 100
    for _ in range(200):
        ev.round()
        if redis_client.hlen(NAMES.heartbeat_gone) == 200:
            break
    assert redis_client.hlen(NAMES.heartbeat_gone) == 200
