from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.settings import Settings
from tests.conftest import make_key


def test_defaults_and_overrides(tmp_path: Path) -> None:
    key = make_key()
    path = tmp_path / "keys.txt"
    path.write_text(key + "\n")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(path)})
    assert settings.routing_keys == (key,)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.pd_url == "https://events.pagerduty.com"
    assert settings.rate_per_min == 120
    settings = Settings.from_env({
        "RELAY_KEYS_FILE": str(path),
        "RELAY_RATE_PER_MIN": "60",
        "RELAY_PD_URL": "http://127.0.0.1:9000/",
        "RELAY_LOG_FORMAT": "JSON",
    })
    assert settings.rate_per_min == 60
    assert settings.pd_url == "http://127.0.0.1:9000"
    assert settings.log_format == "json"


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    key = make_key()
    path = tmp_path / "keys.txt"
    path.write_text(f"{key}\nnot-a-key\n{key}\n")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({
            "RELAY_KEYS_FILE": str(path),
            "RELAY_RATE_PER_MIN": "lots",
            "RELAY_REDIS_URL": "http://127.0.0.1",
            "RELAY_READ_TIMEOUT_S": "-1",
            "RELAY_LOG_LEVEL": "chatty",
        })
    text = str(caught.value)
    for name in ("RELAY_RATE_PER_MIN", "RELAY_REDIS_URL", "RELAY_READ_TIMEOUT_S",
                 "RELAY_LOG_LEVEL", "line 2", "line 3"):
        assert name in text
    assert len(caught.value.problems) == 6
    assert key not in text


def test_settings_are_frozen(settings: Settings) -> None:
    with pytest.raises(AttributeError):
        settings.rate_per_min = 1  # type: ignore[misc]


def _keys_file(tmp_path: Path) -> str:
    path = tmp_path / "keys.txt"
    path.write_text(make_key() + "\n")
    return str(path)


@pytest.mark.parametrize("url", [
    "https://events.pagerduty.com/v2/enqueue", "https://events.pagerduty.com/v2",
    "https://events.pagerduty.com?x=1",
])
def test_a_pagerduty_url_with_a_path_is_refused(tmp_path: Path, url: str) -> None:
    """The relay adds /v2/enqueue itself: a copied endpoint URL would post to
    /v2/enqueue/v2/enqueue, and PagerDuty's 404s would stop every key."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RELAY_KEYS_FILE": _keys_file(tmp_path), "RELAY_PD_URL": url})
    assert "RELAY_PD_URL" in str(caught.value) and "without a path" in str(caught.value)


def test_a_send_that_could_outlast_the_lease_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RELAY_KEYS_FILE": _keys_file(tmp_path), "RELAY_LEASE_TTL_S": "5"})
    [problem] = caught.value.problems
    for name in ("RELAY_LEASE_TTL_S=5", "RELAY_CONNECT_TIMEOUT_S=3.05", "RELAY_READ_TIMEOUT_S=10"):
        assert name in problem
    fits = Settings.from_env({"RELAY_KEYS_FILE": _keys_file(tmp_path), "RELAY_LEASE_TTL_S": "5",
                              "RELAY_CONNECT_TIMEOUT_S": "1", "RELAY_READ_TIMEOUT_S": "3"})
    assert fits.lease_ttl_s == 5
    assert Settings.from_env({"RELAY_KEYS_FILE": _keys_file(tmp_path)}).lease_ttl_s == 15


def test_a_redis_password_is_never_printed(tmp_path, monkeypatch, capsys) -> None:
    import logging

    from relay.cli import main

    root = logging.getLogger()  # main() sets logging up: give it lists to throw away
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("RELAY_KEYS_FILE", _keys_file(tmp_path))
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://:s3cr3t-pw@127.0.0.1:1/0")
    monkeypatch.setenv("RELAY_REDIS_TIMEOUT_S", "0.2")
    assert main(["status"]) == 1  # nothing listens on port 1
    monkeypatch.setenv("RELAY_REDIS_URL", "http://:s3cr3t-pw@127.0.0.1:1/0")
    assert main(["check"]) == 2
    out = capsys.readouterr()
    assert "s3cr3t-pw" not in out.err + out.out and ":***@" in out.err


def test_keys_and_routes_files_other_users_may_read_are_refused(tmp_path) -> None:
    keys = Path(_keys_file(tmp_path))
    routes = tmp_path / "routes.yml"
    routes.write_text("routes: []\n")
    keys.chmod(0o644)
    routes.chmod(0o640)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RELAY_KEYS_FILE": str(keys), "RELAY_ROUTES_FILE": str(routes)})
    assert caught.value.problems == [
        f"RELAY_KEYS_FILE: other users may read {keys} (mode 644): it holds secrets; "
        f"run chmod 600 {keys}"]
    keys.chmod(0o600)
    with pytest.raises(ConfigError, match=f"run chmod 600 {routes}"):
        Settings.from_env({"RELAY_KEYS_FILE": str(keys), "RELAY_ROUTES_FILE": str(routes)})
    routes.chmod(0o600)
    assert Settings.from_env({"RELAY_KEYS_FILE": str(keys), "RELAY_ROUTES_FILE": str(routes)})
