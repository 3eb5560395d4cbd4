"""Review of issue 30's routes-file fields: whatever the file holds, the relay starts or
refuses with every problem named by its path, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.errors import ConfigError
from tests.test_time_fields import INTERVALS, read


def test_names_of_time_intervals_that_are_no_names_are_problems_not_a_crash(
        tmp_path: Path) -> None:
    """A mapping or a list where a name of a time interval goes (a YAML slip such as
    ``[{nights: 1}]``) was looked up in the intervals by name: TypeError at start-up."""
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, INTERVALS + """
channels:
  - name: chat
    type: slack
    url: https://hooks.example/x
    mute_time_intervals: [{nights: 1}]
routes:
  - name: db
    keys: [day]
    active_time_intervals: [[nights]]
    channels: [{name: chat, mute_time_intervals: [{Office: x}]}]
""")
    assert [p.split(": ", 2)[1] for p in caught.value.problems] == [
        "channels[0].mute_time_intervals[0]", "routes[0].channels[0].mute_time_intervals[0]",
        "routes[0].active_time_intervals[0]"]


def test_a_location_that_is_no_zone_name_is_a_problem(tmp_path: Path) -> None:
    """``location: 5`` or an empty one was taken silently as UTC."""
    for location in ("5", '""', "[Europe/Berlin]"):
        with pytest.raises(ConfigError) as caught:
            read(tmp_path, f"""
time_intervals:
  - name: nights
    time_intervals:
      - times: [{{start_time: "22:00", end_time: "24:00"}}]
        location: {location}
""")
        assert [p.split(": ", 2)[1] for p in caught.value.problems] == [
            "time_intervals[0].time_intervals[0].location"], location


def test_a_channel_named_by_a_list_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """(Older than issue 30, on the same path: a use's name was looked up in the channels
    by name: TypeError at start-up.)"""
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, """
channels:
  - name: chat
    type: slack
    url: https://hooks.example/x
routes:
  - name: db
    keys: [day]
    channels: [[chat], {name: [chat]}]
""")
    assert [p.split(": ", 2)[1] for p in caught.value.problems] == [
        "routes[0].channels[0]", "routes[0].channels[1]"]


def test_a_url_python_cannot_split_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """(Older than issue 30, on every type's url: urlparse raised ValueError, "Invalid
    IPv6 URL", at start-up.)"""
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, """
channels:
  - name: chat
    type: discord
    url: "https://[::1/api/webhooks/1/x"
""")
    assert [p.split(": ", 2)[1] for p in caught.value.problems] == ["channels[0].url"]


def test_a_telegram_token_that_is_no_bot_token_is_a_problem(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A bot token read from a file with its line break (or a space, or a slash: it goes
    in the Bot API's URL path) is refused at start-up, by its path and without its value,
    as Pushover's and Twilio's are: it was taken, and every message failed with a 404."""
    for token in ("123456789:AAHsecret\n", "123456789:AAH secret", "123:AAH/../x"):
        monkeypatch.setenv("PD_RELAY_SECRET_BOT", token)
        with pytest.raises(ConfigError) as caught:
            read(tmp_path, """
channels:
  - {name: t, type: telegram, token: "${PD_RELAY_SECRET_BOT}", chat: "-1001234567890"}
""")
        assert [p.split(": ", 2)[1] for p in caught.value.problems] == ["channels[0].token"]
        assert "secret" not in str(caught.value)
