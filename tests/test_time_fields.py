"""The routes file's time_intervals (Alertmanager's syntax) and the quiet-hours, digest and
breaker fields of channels, uses and routes: what is read, and every problem named by
its path."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from relay.errors import ConfigError
from relay.routes.config import RoutesFile, load
from relay.routes.intervals import Spec
from relay.routes.timing import OFF, Breaker, Timing

KEYS = ("day", "night")
INTERVALS = """
time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}, {start_time: 00:00, end_time: 07:00}]
        location: Europe/Berlin
  - name: Office
    time_intervals:
      - weekdays: ["Monday:Friday"]
        times: [{start_time: 09:00, end_time: 17:30}]
      - days_of_month: ["1:5", "-3:-1", 15]
        months: ["january:March", "12"]
        years: ["2026:2027", 2030]
"""


def read(tmp_path: Path, text: str) -> RoutesFile:
    path = tmp_path / "routes.yml"
    path.write_text(text)
    return load(path, KEYS)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, text)
    return [p.split(": ", 1)[1] for p in caught.value.problems]


def test_time_intervals_are_read_as_alertmanager_reads_them(tmp_path: Path) -> None:
    found = read(tmp_path, INTERVALS)
    nights, office = found.time_intervals
    assert nights.name == "nights"
    # unquoted 17:30 is YAML 1.1's base-60 number 1050: the same minute of the day
    assert nights.specs == (Spec(times=((1320, 1440), (0, 420)),
                                 zone=ZoneInfo("Europe/Berlin")),)
    assert office.specs == (
        Spec(times=((540, 1050),), weekdays=((1, 5),)),
        Spec(days_of_month=((1, 5), (-3, -1), (15, 15)), months=((1, 3), (12, 12)),
             years=((2026, 2027), (2030, 2030))))


def test_timing_digest_and_breaker_fields_are_read(tmp_path: Path) -> None:
    found = read(tmp_path, INTERVALS + """
channels:
  - name: chat
    type: slack
    url: https://hooks.example/x
    mute_time_intervals: [nights]
    muted_min_severity: critical
    muted: drop
    digest: 2m
    digest_first: immediate
    breaker: {failures: 3, failure_ratio: 0.7, window: 10m, min_sends: 4, cooldown: 90}
    failed_max: 20
    maintenance: true
  - name: quiet
    type: webhook
    url: https://hooks.example/y
    breaker: off
sources:
  - name: mon
    api_keys: ["sha256:57f721b8e6551d07df9f98d9bd9d23ae72e9301fed57b22874f949279afd8acd"]
    channels: [{name: quiet, active_time_intervals: [Office], digest: 30s}]
routes:
  - name: pay
    keys: [day]
    night_keys: [night]
    active_time_intervals: [Office]
    muted_min_severity: error
    maintenance: true
    channels: [chat, {name: quiet, mute_time_intervals: [nights], muted: hold, digest: 1h}]
""")
    chat, quiet = found.channels
    assert (chat.timing, chat.muted, chat.digest_s, chat.digest_first, chat.breaker,
            chat.failed_max, chat.maintenance) == (
        Timing(("nights",), (), "critical"), "drop", 120.0, "immediate",
        Breaker(3, 0.7, 600.0, 4, 90.0), 20, True)
    assert (quiet.timing, quiet.muted, quiet.digest_s, quiet.breaker, quiet.maintenance) == \
        (Timing(), "hold", 0.0, OFF, False)
    route = found.routes[0]
    assert (route.timing, route.night_keys, route.maintenance) == \
        (Timing((), ("Office",), "error"), ("night",), True)
    plain, used = route.channels
    assert (plain.timing, plain.muted, plain.digest_s) == (Timing(), None, None)
    assert (used.timing, used.muted, used.digest_s) == (Timing(("nights",)), "hold", 3600.0)
    heard = found.sources[0].channels[0]
    assert (heard.timing, heard.digest_s) == (Timing((), ("Office",)), 30.0)


@pytest.mark.parametrize(("spec", "where", "why"), [
    ({"times": [{"start_time": "17:00", "end_time": "09:00"}]}, "times[0]",
     "start_time must be before end_time"),
    ({"times": [{"start_time": "7:00", "end_time": "09:00"}]}, "times[0].start_time",
     'want a time "HH:MM"'),
    ({"times": [{"start_time": "23:00", "end_time": "24:01"}]}, "times[0].end_time",
     'want a time "HH:MM"'),
    ({"times": [{"start_time": "23:00"}]}, "times[0]", "want {start_time"),
    ({"weekdays": ["saturday:sunday"]}, "weekdays[0]", "start day cannot be after end day"),
    ({"weekdays": ["funday"]}, "weekdays[0]", "want a weekday"),
    ({"days_of_month": ["0"]}, "days_of_month[0]", "want a day of the month"),
    ({"days_of_month": ["32"]}, "days_of_month[0]", "want a day of the month"),
    ({"days_of_month": [65]}, "days_of_month[0]", "quote ranges"),
    ({"days_of_month": ["-3:5"]}, "days_of_month[0]", "end day must be negative"),
    ({"days_of_month": ["10:5"]}, "days_of_month[0]", "always before start day"),
    ({"days_of_month": ["-1:-3"]}, "days_of_month[0]", "always before start day"),
    ({"months": ["march:january"]}, "months[0]", "end month is before start month"),
    ({"months": ["13"]}, "months[0]", "want a month"),
    ({"months": ["1:2:3"]}, "months[0]", "want a month"),
    ({"years": ["2027:2026"]}, "years[0]", "end year is before start year"),
    ({"location": "Local"}, "location", "name the zone"),
    ({"location": "Mars/Olympus"}, "location", "no time zone"),
    ({"location": "../../etc/passwd"}, "location", "no time zone"),
    ({"weekdays": []}, "weekdays", "want a non-empty list"),
    ({"hours": ["1"]}, "hours", "unknown field"),
])
def test_each_bad_time_interval_is_named_by_its_path(tmp_path: Path, spec: dict[str, object],
                                                      where: str, why: str) -> None:
    text = yaml.safe_dump({"time_intervals": [{"name": "x", "time_intervals": [spec]}]})
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith(f"time_intervals[0].time_intervals[0].{where}: "), found
    assert why in found[0]


def test_the_end_of_the_day_is_24_00_and_names_are_any_case(tmp_path: Path) -> None:
    text = yaml.safe_dump({"time_intervals": [{"name": "x", "time_intervals": [
        {"times": [{"start_time": "23:00", "end_time": "24:00"}],
         "weekdays": ["SUNDAY", "Monday:tuesday"], "months": ["DECEMBER"]}]}]})
    (spec,) = read(tmp_path, text).time_intervals[0].specs
    assert (spec.times, spec.weekdays, spec.months) == (((1380, 1440),), ((0, 0), (1, 2)),
                                                        ((12, 12),))


def test_unknown_names_and_misplaced_fields_are_problems(tmp_path: Path) -> None:
    found = problems(tmp_path, INTERVALS + """
  - name: nights
    time_intervals: []
channels:
  - name: chat
    type: slack
    url: https://hooks.example/x
    mute_time_intervals: [weekends]
    muted: later
    digest: 2 weeks
    digest_first: now
    breaker: {failures: 0, failure_ratio: 2, window: 0s, cooldown: 3d, colour: red}
    failed_max: 0
    maintenance: yes please
routes:
  - name: a
    channels: [{name: chat, active_time_intervals: [Nights], digest: -1, muted_min_severity: x}]
    mute_time_intervals: [nights]
  - name: b
    keys: [day]
    night_keys: [moon]
    muted_min_severity: critical
  - name: c
    keys: [day]
    night_keys: []
    mute_time_intervals: nights
""")
    assert found == [
        "time_intervals[2].name: the name 'nights' is used twice",
        "channels[0].mute_time_intervals[0]: no time interval named 'weekends' in "
        "time_intervals (nights, Office)",
        "channels[0].muted: want hold (a digest when the quiet interval ends) or drop",
        "channels[0].digest: want a duration such as 30s, 2m or 1h (or seconds), from 1s to 24h",
        "channels[0].digest_first: want gather or immediate",
        "channels[0].breaker.colour: unknown field (want cooldown, failure_ratio, failures, "
        "min_sends, window)",
        "channels[0].breaker.failures: want a whole number from 1 to 10000 (breaker: off for "
        "none)",
        "channels[0].breaker.failure_ratio: want a share above 0 and at most 1, such as 0.5",
        "channels[0].breaker.window: want a duration such as 30s, 2m or 1h (or seconds), "
        "from 1s to 24h",
        "channels[0].breaker.cooldown: want a duration such as 30s, 2m or 1h (or seconds), "
        "from 1s to 24h",
        "channels[0].failed_max: want a whole number from 1 to 100000",
        "channels[0].maintenance: want true or false",
        "routes[0].channels[0].active_time_intervals[0]: no time interval named 'Nights' in "
        "time_intervals (nights, Office)",
        "routes[0].channels[0].muted_min_severity: want one of critical, error, warning, info",
        "routes[0].channels[0].digest: want a duration such as 30s, 2m or 1h (or seconds), "
        "from 1s to 24h",
        "routes[0]: a route's mute_time_intervals and active_time_intervals mute its PagerDuty "
        "events, and it has no keys (its channels' quiet hours are their own: give them on "
        "the channel or on its use)",
        "routes[1].muted_min_severity: only with mute_time_intervals or active_time_intervals",
        "routes[1].night_keys: only on a route with keys and mute_time_intervals or "
        "active_time_intervals: where its events go while it is muted",
        "routes[1].night_keys[0]: no key named 'moon' in the keys file (day, night)",
        "routes[2].night_keys: want a list of key names from the keys file",
    ]


def test_self_alerts_and_heartbeats_take_no_quiet_hours(tmp_path: Path) -> None:
    found = problems(tmp_path, INTERVALS + """
channels:
  - {name: chat, type: slack, url: "https://hooks.example/x"}
self_alert:
  channels: [{name: chat, mute_time_intervals: [nights]}]
""")
    assert found == ["self_alert.channels[0]: want min_severity, name, template only"]
