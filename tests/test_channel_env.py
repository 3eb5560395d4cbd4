"""``${NAME}`` in the routes file reads only ``PD_RELAY_SECRET_*`` variables: a routes
file cannot send the relay's own settings (``RELAY_REDIS_URL`` and its password) or any
other variable of the process to a channel (issue 23, finding 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.routes.channels import referenced
from relay.routes.config import load

ROUTES = """
channels:
  - name: leak
    type: webhook
    url: https://hooks.example.org/in
    template: "redis: ${RELAY_REDIS_URL}"
    headers: {X-Home: "${HOME}", Authorization: "Bearer ${PD_RELAY_SECRET_TICKETS}"}
  - name: chat
    type: slack
    url: ${PD_RELAY_SECRET_SLACK_URL}
"""


@pytest.fixture
def routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("HOME", "/home/relay")
    monkeypatch.setenv("PD_RELAY_SECRET_TICKETS", "tk-123")
    monkeypatch.setenv("PD_RELAY_SECRET_SLACK_URL", "https://hooks.slack.example/T0/B0/x")
    path = tmp_path / "routes.yml"
    path.write_text(ROUTES)
    return path


def test_only_pd_relay_secret_variables_are_read(routes: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(routes, ["db"])
    problems = caught.value.problems
    text = "\n".join(problems)
    assert "hunter2" not in text and "/home/relay" not in text, text
    [redis] = [p for p in problems if p.startswith(f"{routes}: channels[0].template:")]
    assert "${RELAY_REDIS_URL}" in redis and "PD_RELAY_SECRET_" in redis, redis
    assert "rename" in redis and "PD_RELAY_SECRET_RELAY_REDIS_URL" in redis, redis
    assert any(p.startswith(f"{routes}: channels[0].headers.X-Home:") for p in problems), text
    assert len(problems) == 2, text  # the PD_RELAY_SECRET_ ones are fine


def test_a_pd_relay_secret_variable_is_expanded(routes: Path) -> None:
    routes.write_text(ROUTES.replace("${RELAY_REDIS_URL}", "x").replace("${HOME}", "y"))
    chat = load(routes, ["db"]).channels[1]
    assert chat.url == "https://hooks.slack.example/T0/B0/x"
    assert dict(load(routes, ["db"]).channels[0].headers)["Authorization"] == "Bearer tk-123"


def test_start_passes_on_only_the_variables_the_file_may_read(routes: Path) -> None:
    assert referenced(routes) == {"PD_RELAY_SECRET_TICKETS", "PD_RELAY_SECRET_SLACK_URL"}
