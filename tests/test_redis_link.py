"""The start-up warning for a Redis reached over the network without TLS or a password
(issue 25: TCP is for what must cross hosts, with TLS and a password)."""

from __future__ import annotations

import logging

import pytest

from relay.startup import redis_link_problems, warn_of_redis_link


@pytest.mark.parametrize("url", [
    "unix:///run/pd-relay/redis.sock?db=0",
    "unix://:pw@/srv/run/redis.sock",
    "redis://:pw@127.0.0.1:6379/0",
    "redis://:pw@localhost:6379/0",
    "redis://:pw@[::1]:6379/0",
    "rediss://:pw@redis.example.net:6380/0",
    "rediss://user:pw@10.0.0.5:6380/0",
])
def test_a_private_or_protected_link_says_nothing(url: str) -> None:
    assert redis_link_problems(url) == []


def test_plain_tcp_beyond_loopback_is_named_without_its_password() -> None:
    problems = redis_link_problems("redis://:s3cretpassword@10.0.0.5:6379/0")
    assert len(problems) == 1
    assert "10.0.0.5" in problems[0] and "rediss://" in problems[0]
    assert "s3cretpassword" not in problems[0]


def test_no_password_beyond_loopback_is_named_too() -> None:
    problems = redis_link_problems("rediss://redis.example.net:6380/0")
    assert len(problems) == 1 and "password" in problems[0]
    assert len(redis_link_problems("redis://redis.example.net:6379/0")) == 2


def test_the_warning_is_logged_once_per_problem(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="relay.startup"):
        assert warn_of_redis_link("redis://:pw@192.0.2.7:6379/0") is True
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "pw@" not in caplog.text


def test_a_sentinel_url_beyond_loopback_is_named_plain_tcp_and_passwordless() -> None:
    """Issue 27: the Sentinel URL has no TLS; its hosts beyond loopback are warned of."""
    assert redis_link_problems("redis+sentinel://:pw@127.0.0.1:26379,[::1]:26380/svc") == []
    problems = redis_link_problems("redis+sentinel://:s3cret@10.0.0.5:26379,10.0.0.6/svc/0")
    assert len(problems) == 1 and "10.0.0.5, 10.0.0.6" in problems[0]
    assert "plain TCP" in problems[0] and "s3cret" not in problems[0]
    assert len(redis_link_problems("redis+sentinel://10.0.0.5:26379/svc")) == 2
