"""Settings for Redis under Sentinel (issue 27): the ``redis+sentinel://`` URL, the
Sentinels' password, RELAY_MIN_REPLICAS and RELAY_REPLICA_TIMEOUT_MS; every bad part
listed at once, passwords masked wherever the URL is shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.errors import ConfigError
from relay.sentinel import SentinelUrl, is_sentinel, parse
from relay.settings import Settings, masked_url
from tests.test_settings import _keys_file

URL = "redis+sentinel://:pw0rd@h1:26379,h2:26380,h3/mymaster/2"


def test_the_sentinel_url_names_the_sentinels_service_db_and_password() -> None:
    assert is_sentinel(URL) and not is_sentinel("redis://h1:6379/0")
    assert parse(URL) == SentinelUrl(
        hosts=(("h1", 26379), ("h2", 26380), ("h3", 26379)), service="mymaster", db=2,
        username=None, password="pw0rd")
    assert parse("redis+sentinel://ops:p%40ss@h1:1/svc") == SentinelUrl(
        (("h1", 1),), "svc", 0, "ops", "p@ss")


def test_settings_take_a_sentinel_url_and_default_to_one_replica(tmp_path) -> None:
    keys = _keys_file(tmp_path)
    settings = Settings.from_env({"RELAY_KEYS_FILE": keys, "RELAY_REDIS_URL": URL,
                                  "RELAY_SENTINEL_PASSWORD": "s3nt"})
    assert settings.redis_url == URL and settings.sentinel_password == "s3nt"
    assert settings.min_replicas == 1 and settings.replica_timeout_ms == 500
    plain = Settings.from_env({"RELAY_KEYS_FILE": keys})
    assert plain.min_replicas == 0 and plain.replica_timeout_ms == 500
    chosen = Settings.from_env({"RELAY_KEYS_FILE": keys, "RELAY_REDIS_URL": URL,
                                "RELAY_MIN_REPLICAS": "0", "RELAY_REPLICA_TIMEOUT_MS": "900"})
    assert chosen.min_replicas == 0 and chosen.replica_timeout_ms == 900
    assert "s3nt" not in repr(settings)
    assert "RELAY_SENTINEL_PASSWORD" in Settings.env_names()


def test_every_bad_part_of_a_sentinel_url_and_the_replica_settings_is_listed(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RELAY_KEYS_FILE": _keys_file(tmp_path),
                           "RELAY_REDIS_URL": "redis+sentinel://:s3cr3t@h1:x,:26379/",
                           "RELAY_MIN_REPLICAS": "-1", "RELAY_REPLICA_TIMEOUT_MS": "0"})
    text = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 3, text
    assert "h1: its port must be a number" in text
    assert "a Sentinel's host is missing" in text
    assert "name the service" in text
    assert "RELAY_MIN_REPLICAS='-1': must be 0 or more" in text
    assert "RELAY_REPLICA_TIMEOUT_MS='0': must be greater than 0" in text
    assert "s3cr3t" not in text and ":***@" in text


def test_a_sentinel_url_shown_has_its_password_masked() -> None:
    assert Settings(redis_url=URL).redis_shown == \
        "redis+sentinel://:***@h1:26379,h2:26380,h3/mymaster/2"


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                                exclude_characters="@/:,%?#[]"),
               min_size=1, max_size=20))
def test_any_password_in_a_sentinel_url_is_masked(password: str) -> None:
    url = f"redis+sentinel://:{password}@127.0.0.1:26379,127.0.0.2:26379/svc/0"
    shown = masked_url(url)
    assert parse(url).password == password
    assert shown == "redis+sentinel://:***@127.0.0.1:26379,127.0.0.2:26379/svc/0"


def test_the_lease_must_outlast_a_send_and_its_wait_for_replicas(tmp_path) -> None:
    """A send starts after WAIT returned, and only with the lease still ours for the
    whole send: a WAIT as long as the lease's margin would stop every send."""
    env = {"RELAY_KEYS_FILE": _keys_file(tmp_path), "RELAY_LEASE_TTL_S": "15",
           "RELAY_MIN_REPLICAS": "1", "RELAY_REPLICA_TIMEOUT_MS": "2000"}
    with pytest.raises(ConfigError, match="RELAY_REPLICA_TIMEOUT_MS=2000"):
        Settings.from_env(env)
    assert Settings.from_env(dict(env, RELAY_MIN_REPLICAS="0")).lease_ttl_s == 15
    assert Settings.from_env(dict(env, RELAY_LEASE_TTL_S="16.1")).lease_ttl_s == 16.1
