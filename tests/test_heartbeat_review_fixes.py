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
