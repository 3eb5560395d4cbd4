"""What the views show of the heartbeat checks (relay/heartbeats/report.py): the rows of
``pd-relay status --json``, the HEARTBEATS table, ages on Redis's clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.heartbeats.model import STATES, Check, CheckState
from relay.heartbeats.report import format_table, read, rows, schedule, span

NOW = 1_800_000_000.0
BACKUP = Check("backup", grace_s=3600, cron="0 3 * * *", tz="Europe/Berlin")
WEB = Check("web", grace_s=60, period_s=300, origin="cli")
CRON = Check("cron-job", grace_s=30, period_s=90)


class FakeStore:
    """The views' side of store.Heartbeats: states by name, as the contract says."""

    def __init__(self, states: Sequence[CheckState]) -> None:
        self.found = {s.name: s for s in states}
        self.asked: list[list[str]] = []

    def states(self, checks: Sequence[Check]) -> list[CheckState]:
        self.asked.append([c.name for c in checks])
        return [self.found.get(c.name, CheckState(c.name, "new")) for c in checks]

    def recent_pings(self, name: str, count: int) -> list[dict[str, Any]]:
        return [{"at": NOW, "signal": "success", "name": name, "count": count}]

    stored: list[Check] = []

    def stored_checks(self) -> list[Check]:
        return list(self.stored)

    def gap(self) -> dict[str, Any]:
        return {}


class Clock:
    def time(self) -> tuple[int, int]:
        return int(NOW), 250_000


def test_rows_age_each_check_on_redis_clock() -> None:
    store = FakeStore([
        CheckState("backup", "down", last_ping_at=NOW - 90_000, last_signal="fail",
                   since=NOW - 600, outages=3),
        CheckState("web", "up", last_ping_at=NOW - 40, last_signal="success",
                   expected_at=NOW + 260, down_at=NOW + 320, since=NOW - 40, outages=1),
        CheckState("cron-job", "late", last_ping_at=NOW - 100, last_signal="success",
                   expected_at=NOW - 10, down_at=NOW + 20, since=NOW - 10),
    ])
    found = read(Clock(), store, [BACKUP, WEB, CRON])
    assert store.asked == [["backup", "web", "cron-job"]]
    by = {row["name"]: row for row in found}
    assert [row["name"] for row in found] == ["backup", "web", "cron-job"]
    assert by["backup"]["state"] == "down" and by["backup"]["down_since"] == NOW - 600
    assert by["backup"]["next_due_in_seconds"] is None and by["backup"]["outages"] == 3
    assert by["web"]["last_ping_age_seconds"] == 40.2  # Redis's clock: NOW + 0.25 s
    assert by["web"]["next_due_in_seconds"] == 259.8 and by["web"]["down_since"] is None
    assert by["cron-job"]["next_due_in_seconds"] == -10.2
    assert by["web"]["origin"] == "cli" and by["web"]["down_at"] == NOW + 320


def test_a_check_the_store_does_not_know_yet_is_new() -> None:
    [row] = rows([WEB], [], NOW)
    assert row["state"] == "new" and row["last_ping_age_seconds"] is None
    assert row["expected_at"] is None and row["outages"] == 0


def test_no_checks_no_table_and_no_redis_round_trip() -> None:
    store = FakeStore([])
    assert read(Clock(), store, []) == [] and store.asked == []
    assert format_table([]) == ""


def test_the_table_says_state_last_ping_next_due_and_down_since() -> None:
    states = [
        CheckState("backup", "down", last_ping_at=NOW - 90_000, last_signal="fail",
                   since=NOW - 600),
        CheckState("web", "up", last_ping_at=NOW - 40, last_signal="success",
                   expected_at=NOW + 260),
        CheckState("cron-job", "late", last_ping_at=NOW - 100, last_signal="success",
                   expected_at=NOW - 10),
    ]
    lines = format_table(rows([BACKUP, WEB, CRON], states, NOW)).splitlines()
    assert lines[0].split() == ["HEARTBEAT", "STATE", "LAST", "PING", "NEXT", "DUE", "DOWN",
                                "SINCE", "SCHEDULE"]
    backup, web, cron = lines[1:]
    assert backup.split()[:5] == ["backup", "DOWN", "1d1h", "ago", "(fail)"]
    assert "2027-01-15 07:50:00 UTC" in backup
    assert "cron '0 3 * * *' Europe/Berlin, grace 1h" in backup
    assert web.split()[:7] == ["web", "(cli)", "up", "40s", "ago", "(success)", "in"]
    assert "4m20s" in web and "every 5m, grace 1m" in web
    assert "10s overdue" in cron and cron.split()[1] == "late"


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0s"), (59.6, "1m"), (250, "4m10s"),
                                                (7500, "2h5m"), (3600, "1h"),
                                                (273600, "3d4h")])
def test_span(seconds: float, shown: str) -> None:
    assert span(seconds) == shown


def test_schedule_names_period_or_cron() -> None:
    assert schedule(CRON) == "every 90s"  # as `pd-relay heartbeat list` says it
    assert schedule(BACKUP) == "cron '0 3 * * *' Europe/Berlin"


def scrape(fake: Any, checks: Sequence[Check], states: Sequence[CheckState]) -> dict[str, float]:
    """The heartbeat figures as Prometheus renders them: sample line -> value."""
    from prometheus_client import CollectorRegistry, generate_latest

    from relay.heartbeats.metrics import collect
    from relay.names import Names

    class Figures:
        def collect(self) -> Any:
            return collect(fake, Names("pdr"), FakeStore(states), checks)

    registry = CollectorRegistry()
    registry.register(Figures())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_metrics_say_up_the_last_pings_age_and_the_states(fake) -> None:
    from relay.names import Names

    now = redis_clock(fake)
    fake.set(Names("pdr").heartbeat_clock, int((now - 3) * 1000))
    found = scrape(fake, [BACKUP, WEB, CRON], [
        CheckState("backup", "down", last_ping_at=now - 500, last_signal="fail", since=now - 5,
                   outages=2),
        CheckState("web", "up", last_ping_at=now - 40, expected_at=now + 260, outages=1),
    ])
    assert found['pd_relay_heartbeat_up{check="backup"}'] == 0
    assert found['pd_relay_heartbeat_up{check="web"}'] == 1
    assert found['pd_relay_heartbeat_up{check="cron-job"}'] == 1  # new: not down
    assert 40 <= found['pd_relay_heartbeat_last_ping_age_seconds{check="web"}'] < 45
    assert 'pd_relay_heartbeat_last_ping_age_seconds{check="cron-job"}' not in found
    assert found['pd_relay_heartbeat_outages_total{check="backup"}'] == 2
    assert found['pd_relay_heartbeats{state="down"}'] == 1
    assert found['pd_relay_heartbeats{state="new"}'] == 1
    assert found['pd_relay_heartbeats{state="paused"}'] == 0  # every state, always
    assert 3 <= found["pd_relay_heartbeat_evaluated_age_seconds"] < 8


def test_never_evaluated_is_infinitely_old_and_no_checks_no_figure(fake) -> None:
    assert scrape(fake, [WEB], [])["pd_relay_heartbeat_evaluated_age_seconds"] == float("inf")
    assert "pd_relay_heartbeat_evaluated_age_seconds" not in scrape(fake, [], [])


def redis_clock(fake: Any) -> float:
    seconds, micros = fake.time()
    return int(seconds) + int(micros) / 1e6


def test_the_relays_downtime_is_noted_while_its_grace_holds() -> None:
    from relay.heartbeats.report import gap_note, recent_gap

    gap = {"at": NOW - 50, "gap_s": 130.0, "reason": "evaluator", "since": NOW - 50,
           "open": False}
    assert recent_gap(gap, [WEB, CRON], NOW) == gap  # 50 s ago: WEB's grace (60 s) holds
    assert recent_gap(gap, [CRON], NOW) is None  # CRON's (30 s) is over
    assert recent_gap(gap, [WEB], NOW + 11) is None
    assert recent_gap({}, [WEB], NOW) is None and recent_gap(gap, [], NOW) is None
    assert recent_gap({**gap, "open": True}, [CRON], NOW) is not None
    note = gap_note(gap)
    assert note.startswith("HEARTBEATS: the relay was away 2m10s (no evaluation ran;")
    assert "every check got one grace from 2027-01-15 07:59:10 UTC" in note
    opened = gap_note({**gap, "open": True, "reason": "ingress"})
    assert opened.startswith("HEARTBEATS: no ingress node can take pings now (noticed "
                             "2027-01-15 07:59:10 UTC): no check goes down until one is back")
    started = gap_note({**gap, "reason": "start", "gap_s": 0})
    assert started == ("HEARTBEATS: the evaluation started 2027-01-15 07:59:10 UTC: every "
                       "check got one grace from then before it may go down")
    assert gap_note(None) == ""


def test_the_report_lists_the_files_checks_then_the_run_time_ones() -> None:
    from relay.heartbeats.report import Report

    store = FakeStore([CheckState("zeta", "paused")])
    store.stored = [Check("zeta", grace_s=5, period_s=10, origin="cli"),
                    Check("cron-job", grace_s=5, period_s=10, origin="cli"),  # the file's
                    Check("alpha", grace_s=5, period_s=10, origin="cli")]
    report = Report(Clock(), store, lambda: [CRON, BACKUP])
    assert [(c.name, c.origin) for c in report.checks()] == [
        ("cron-job", "file"), ("backup", "file"), ("alpha", "cli"), ("zeta", "cli")]
    assert [row["state"] for row in report.rows()] == ["new", "new", "new", "paused"]
    check, row, pings = report.one("zeta")  # type: ignore[misc]
    assert check.origin == "cli" and row["state"] == "paused"
    assert pings == [{"at": NOW, "signal": "success", "name": "zeta", "count": 20}]
    assert report.one("nope") is None

TIMES = st.none() | st.floats(min_value=NOW - 400 * 86400, max_value=NOW + 400 * 86400)


@st.composite
def states(draw: Any, name: str) -> CheckState:
    return CheckState(name, draw(st.sampled_from(STATES)), last_ping_at=draw(TIMES),
                      last_signal=draw(st.sampled_from(("", "success", "start", "fail"))),
                      expected_at=draw(TIMES), down_at=draw(TIMES), since=draw(TIMES),
                      outages=draw(st.integers(0, 10**6)))


@given(st.lists(st.sampled_from([BACKUP, WEB, CRON]), unique=True).flatmap(
    lambda checks: st.tuples(st.just(checks), st.tuples(*[states(c.name) for c in checks]))))
def test_any_states_make_one_aligned_line_per_check(drawn: Any) -> None:
    """Whatever the store holds (times far off, missing, in the future), each check gets
    one row and one line, the columns line up, and the signs say the truth."""
    checks, found = drawn
    made = rows(checks, list(found), NOW)
    assert [row["name"] for row in made] == [c.name for c in checks]
    for row, state in zip(made, found, strict=True):
        age, due = row["last_ping_age_seconds"], row["next_due_in_seconds"]
        assert age is None or age >= 0
        assert (due is None) == (state.expected_at is None)
        assert due is None or (due < 0) == (state.expected_at < NOW - 0.05) or abs(due) < 0.1
        assert (row["down_since"] is not None) == (state.state == "down" and
                                                  state.since is not None)
    lines = format_table(made).splitlines()
    assert len(lines) == (len(checks) + 1 if checks else 0)
    if lines:
        start = lines[0].index("STATE")
        assert all(line[start - 2:start] == "  " for line in lines[1:])
