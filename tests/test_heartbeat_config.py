"""The routes file's ``heartbeats:`` section (checked whole, every problem by its path)
and when a check's next ping is expected (period, or cron in its time zone)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from relay.auth import digest, new_token
from relay.errors import ConfigError
from relay.heartbeats.config import label_matcher, labels_match
from relay.heartbeats.model import Check
from relay.heartbeats.schedule import cron_times, duration, expected_after
from relay.routes.config import load

KEYS = ("ops", "db")
GOOD = """
channels:
  - {name: ops-slack, type: slack, url: "https://hooks.example.com/x"}
sources:
  - {name: backup-host, api_keys: ["%s"]}
routes:
  - {name: ops, keys: [ops], channels: [ops-slack]}
heartbeats:
  - name: nightly-backup
    cron: "30 2 * * *"
    tz: Europe/Berlin
    grace: 30m
    severity: error
    summary: Nightly backup did not run
    keys: [db]
    sources: [backup-host]
  - name: watchdog
    period: 2m
    route: ops
    watchdog: ['alertname="Watchdog"', 'prometheus=~"prod-.*"']
  - {name: every-90s, period: 90, channels: [ops-slack]}
"""


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yml"
    path.write_text(text)
    return path


def test_a_good_section_gives_its_checks(tmp_path: Path) -> None:
    found = load(write(tmp_path, GOOD % digest(new_token()[0])), KEYS).heartbeats
    backup, watchdog, short = found
    assert (backup.name, backup.cron, backup.tz, backup.grace_s, backup.period_s) == \
        ("nightly-backup", "30 2 * * *", "Europe/Berlin", 1800.0, None)
    assert (backup.severity, backup.summary, backup.keys, backup.sources) == \
        ("error", "Nightly backup did not run", ("db",), ("backup-host",))
    # route: NAME takes the route's keys and channels; defaults: grace 5m, critical, any
    assert (watchdog.period_s, watchdog.grace_s, watchdog.keys, watchdog.severity) == \
        (120.0, 300.0, ("ops",), "critical")
    assert [use.name for use in watchdog.channels] == ["ops-slack"]
    assert watchdog.sources is None and [str(m) for m in watchdog.watchdog] == \
        ['alertname="Watchdog"', 'prometheus=~"prod-.*"']
    assert (short.period_s, short.keys, short.origin) == (90.0, (), "file")


def test_every_problem_of_the_section_is_named_by_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, """
routes:
  - {name: ops, keys: [ops]}
  - {name: bin, drop: true}
heartbeats:
  - {name: a, period: 5x, keys: [ops]}
  - {name: b, period: 5m, cron: "* * * * *", keys: [ops]}
  - {name: c, keys: [ops]}
  - {name: d, cron: "61 * * * *", keys: [ops]}
  - {name: e, cron: "* * * *", keys: [ops]}
  - {name: f, cron: "0 3 * * *", tz: Mars/Olympus, keys: [ops]}
  - {name: g, period: 5m, keys: [nope], channels: [nochan], sources: [nobody]}
  - {name: h, period: 5m, route: missing}
  - {name: i, period: 5m, route: bin}
  - {name: j, period: 5m, keys: [ops], watchdog: ['alertname>="x"', 'job=~"("']}
  - {name: start, period: 5m, keys: [ops]}
  - {name: "404", period: 5m, keys: [ops]}
  - {name: k, period: 5m, keys: [ops], colour: red, severity: huge, grace: 0s}
  - {name: l, period: 5m, keys: [ops]}
  - {name: l, period: 5m, keys: [ops]}
  - {name: m, period: 5m}
  - {name: n, period: 5m, tz: UTC, keys: [ops]}
  - {name: o, period: 5m, keys: [ops], route: ops}
  - just-a-string
""")
    with pytest.raises(ConfigError) as caught:
        load(path, KEYS)
    text = str(caught.value)
    for expected in [
        "heartbeats[0].period: want a duration",
        "heartbeats[1]: give exactly one of period and cron",
        "heartbeats[2]: give exactly one of period and cron",
        "heartbeats[3].cron: not a cron schedule: Bad minute",
        "heartbeats[4].cron: want a cron schedule of five fields",
        "heartbeats[5].tz: want an IANA time zone",
        "heartbeats[6].keys[0]: no key named 'nope'",
        "heartbeats[6].channels[0]: no channel named 'nochan'",
        "heartbeats[6].sources[0]: no source named 'nobody'",
        "heartbeats[7].route: no route named 'missing'",
        "heartbeats[8].route: route 'bin' drops its events",
        "heartbeats[9].watchdog[0]: 'alertname>=\"x\"' is not a label matcher",
        "heartbeats[9].watchdog[1]: 'job=~\"(\"': bad regular expression",
        "heartbeats[10].name: 'start' is a ping signal",
        "heartbeats[11].name: '404' is a ping signal",
        "heartbeats[12].colour: unknown field",
        "heartbeats[12].severity: want one of critical, error, warning, info",
        "heartbeats[12].grace: want a duration from 1s",
        "heartbeats: the name 'l' is used twice",
        "heartbeats[15].keys: name where its page goes",
        "heartbeats[16].tz: a time zone is for a cron schedule only",
        "heartbeats[17].route: give route, or keys and channels, not both",
        "heartbeats[18]: want a mapping",
    ]:
        assert expected in text, (expected, text)


def test_a_section_that_is_not_a_list_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="heartbeats: want a list of checks"):
        load(write(tmp_path, "heartbeats: {name: a}\n"), KEYS)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), (45, 45.0), (2.5, 2.5),
    ("1.5h", 5400.0), ("0s", None), (0, None), ("5", None), ("5x", None), (True, None),
    ("367d", None), (None, None),
])
def test_durations(text: object, seconds: float | None) -> None:
    assert duration(text) == seconds


def test_a_period_check_is_expected_a_period_after_its_last_ping() -> None:
    check = Check("a", grace_s=60, period_s=300)
    assert expected_after(check, 1000.5) == 1300.5


def test_cron_runs_once_on_the_night_the_clocks_go_back() -> None:
    # Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 comes twice.
    # Debian cron (cronsim) runs a fixed-time job once: after the run at 02:30 CEST
    # (00:30 UTC) the next is the following night, not 02:30 CET an hour later
    # (croniter would expect a ping then: a false page once a year).
    check = Check("nightly", grace_s=60, cron="30 2 * * *", tz="Europe/Berlin")
    assert expected_after(check, at(2026, 10, 25, 0, 31)) == at(2026, 10, 26, 1, 30)
    # a job every 30 minutes runs in both passes of the repeated hour
    every = cron_times("*/30 * * * *", "Europe/Berlin", at(2026, 10, 25, 0, 30), 3)
    assert every == [at(2026, 10, 25, 1, 0), at(2026, 10, 25, 1, 30), at(2026, 10, 25, 2, 0)]


def test_cron_runs_a_job_of_the_skipped_hour_when_the_clocks_go_forward() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 never comes: run at 03:00 CEST
    check = Check("nightly", grace_s=60, cron="30 2 * * *", tz="Europe/Berlin")
    assert expected_after(check, at(2026, 3, 29, 0, 0)) == at(2026, 3, 29, 1, 0)
    assert expected_after(check, at(2026, 3, 29, 1, 0)) == at(2026, 3, 30, 0, 30)


def test_cron_times_are_strictly_after_the_ping() -> None:
    # a ping exactly at a scheduled time expects the next one
    assert cron_times("0 * * * *", "UTC", at(2026, 1, 1, 10), 2) == \
        [at(2026, 1, 1, 11), at(2026, 1, 1, 12)]


@pytest.mark.parametrize(("matchers", "labels", "holds"), [
    (['alertname="Watchdog"'], {"alertname": "Watchdog"}, True),
    (['alertname="Watchdog"'], {"alertname": "Other"}, False),
    (['alertname="Watchdog"', 'prometheus=~"prod-.*"'],
     {"alertname": "Watchdog", "prometheus": "prod-eu"}, True),
    (['alertname="Watchdog"', 'prometheus=~"prod-.*"'], {"alertname": "Watchdog"}, False),
    (['cluster!="test"'], {"alertname": "Watchdog"}, True),  # absent: ""
    (['severity!~"crit.*"'], {"severity": "critical"}, False),
    ([], {"alertname": "Watchdog"}, False),  # no matchers: not a watchdog
])
def test_watchdog_matchers_are_over_an_alerts_labels(matchers: list[str],
                                                       labels: dict[str, str],
                                                       holds: bool) -> None:
    assert labels_match(tuple(label_matcher(m) for m in matchers), labels) is holds
