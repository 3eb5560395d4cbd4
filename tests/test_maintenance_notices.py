"""Maintenance notices (relay.channels.maintenance): who hears of a window, each of its
events told once and in order, with the triggers it held back; a fake clock throughout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from relay.app import create_app
from relay.channels import maintenance as told_of
from relay.channels import messages
from relay.channels.maintenance import GRACE_S, Notices, Seen, Watched, held_field
from relay.channels.notice import Notice
from relay.channels.rqjobs import job_id
from relay.names import Names
from relay.routes.channels import Channel, Use
from relay.routes.config import Route, RoutesFile, Window, load
from relay.routes.matchers import parse
from relay.routes.windows import Windows
from relay.settings import Settings
from tests.conftest import trigger

NAMES = Names("pdr")
T0 = 1_795_998_000.0  # 2026-11-30 00:20 UTC
TEAM = Channel("team", "slack", url="https://hooks.example.org/t", maintenance=True)
DB = Channel("db-chat", "webhook", url="https://hooks.example.org/db")
WEB = Channel("web-chat", "webhook", url="https://hooks.example.org/web")
QUIET = Channel("quiet", "webhook", url="https://hooks.example.org/q")  # hears nothing
ROUTES = RoutesFile(
    routes=(Route("db", (parse('source=~"db.*"'),), channels=(Use("db-chat"),),
                  maintenance=True),
            Route("web", (parse('source="web"'),), channels=(Use("web-chat"),),
                  maintenance=True),
            Route("other", (), channels=(Use("quiet"),))),
    channels=(TEAM, DB, WEB, QUIET))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Told:
    """The put of the dispatcher, as RQ would take it: one job per id."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, Notice]] = {}

    def put(self, channel: Channel, notice: Notice) -> bool:
        made = job_id(notice.id, channel.name)
        if made in self.jobs:
            return False
        self.jobs[made] = (channel.name, notice)
        return True

    def said(self, channel: str) -> list[str]:
        return [n.event["payload"]["custom_details"]["event"]
                for name, n in self.jobs.values() if name == channel]

    def summaries(self, channel: str) -> list[str]:
        return [n.event["payload"]["summary"] for name, n in self.jobs.values()
                if name == channel]


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def notices(fake: fakeredis.FakeRedis, clock: Clock, told: Told,
            routes: RoutesFile = ROUTES) -> Notices:
    return Notices(fake, NAMES, {c.name: c for c in routes.channels}, lambda: routes,
                   told.put, clock)


def test_a_window_added_at_run_time_is_told_added_started_ended_once_with_what_it_held(
        fake: fakeredis.FakeRedis) -> None:
    clock, told = Clock(), Told()
    windows = Windows(fake, NAMES.maintenance, clock)
    window = windows.add("db-upgrade", ['source=~"db.*"'], T0 + 60, T0 + 3600, "pg 17")
    first = notices(fake, clock, told)
    assert first.tick() == [("db-upgrade", "added")]
    assert first.tick() == []  # told once
    # the channel with maintenance: true and the db route's channel; not web's (its
    # source="web" cannot match db.*) nor the route without maintenance: true
    assert told.said("team") == told.said("db-chat") == ["added"]
    assert told.said("web-chat") == told.said("quiet") == []
    assert told.summaries("team") == [
        'Maintenance window db-upgrade added: will hold triggers matching source=~"db.*" '
        "from 00:21 UTC to 01:20 UTC (pg 17)"]
    clock.now = T0 + 59
    assert first.tick() == []
    clock.now = T0 + 60
    second = notices(fake, clock, told)  # another dispatcher: what was told is in Redis
    assert second.tick() == [("db-upgrade", "started")]
    assert told.summaries("db-chat")[-1] == (
        'Maintenance window db-upgrade started: holds triggers matching source=~"db.*" '
        "until 01:20 UTC (pg 17)")
    fake.hincrby(NAMES.decisions, held_field(window), 3)  # as the ingress nodes count
    clock.now = T0 + 3600
    assert second.tick() == []  # the nodes' last counts may still come
    fake.hincrby(NAMES.decisions, held_field(window), 1)
    clock.now = T0 + 3600 + GRACE_S
    assert second.tick() == [("db-upgrade", "ended")] and first.tick() == []
    assert told.said("team") == ["added", "started", "ended"]
    ended = [n for name, n in told.jobs.values() if name == "team"][-1]
    assert ended.event["payload"]["custom_details"]["held"] == 4
    assert ended.event["payload"]["summary"] == \
        "Maintenance window db-upgrade ended: it held back 4 triggers (pg 17)"
    assert len(told.jobs) == 6 and len({n.id for _, n in told.jobs.values()}) == 3
    # a day on, the window is dropped (relay.routes.windows): so are its memory and count
    clock.now = T0 + 3600 + 86_401
    assert second.tick() == []
    assert fake.hlen(NAMES.maintenance_told) == 0
    assert fake.hget(NAMES.decisions, held_field(window)) is None


def test_expired_early_and_a_window_in_force_when_added(fake: fakeredis.FakeRedis) -> None:
    clock, told = Clock(), Told()
    windows = Windows(fake, NAMES.maintenance, clock)
    window = windows.add("night", [], T0 - 10, T0 + 7200)
    teller = notices(fake, clock, told)
    assert teller.tick() == [("night", "started")]  # in force already: "started" alone
    assert told.summaries("team") == ["Maintenance window night started: holds every "
                                      "trigger until 02:20 UTC"]
    assert told.said("web-chat") == ["started"]  # no matchers: every route's may be held
    clock.now = T0 + 600
    assert windows.expire(window)
    fake.hincrby(NAMES.decisions, held_field(window), 1)
    clock.now = T0 + 600 + GRACE_S - 0.1
    assert teller.tick() == []
    clock.now = T0 + 600 + GRACE_S
    assert teller.tick() == [("night", "expired")]
    assert told.summaries("team")[-1] == ("Maintenance window night expired early (it was to "
                                          "end at 02:20 UTC): it held back 1 trigger")
    # expired before it started: told so too, having held nothing
    later = windows.add("later", [], T0 + 5000, T0 + 6000)
    assert teller.tick() == [("later", "added")]
    windows.expire(later)
    clock.now += GRACE_S
    assert teller.tick() == [("later", "expired")]
    assert told.said("team") == ["started", "expired early", "added", "expired early"]


def test_a_window_first_seen_after_its_end_is_told_nothing(fake: fakeredis.FakeRedis) -> None:
    clock, told = Clock(), Told()
    Windows(fake, NAMES.maintenance, clock).add("old", [], T0 - 7200, T0 - 3600)
    teller = notices(fake, clock, told)
    assert teller.tick() == [] and told.jobs == {}
    clock.now += 3600
    assert teller.tick() == [] and told.jobs == {}


def test_the_routes_file_windows_and_one_removed_in_force(fake: fakeredis.FakeRedis) -> None:
    clock, told = Clock(), Told()
    window = Window("deploy", (parse('source="web"'),), T0 + 10, T0 + 100)
    routes = ROUTES
    teller = Notices(fake, NAMES, {c.name: c for c in ROUTES.channels}, lambda: routes,
                     told.put, clock)
    assert teller.tick() == []
    routes = RoutesFile(routes=ROUTES.routes, channels=ROUTES.channels, maintenance=(window,))
    assert teller.tick() == [("deploy", "added")]
    assert told.said("web-chat") == ["added"] and told.said("db-chat") == []
    clock.now = T0 + 10
    assert teller.tick() == [("deploy", "started")]
    fake.hincrby(NAMES.decisions, held_field(window.key), 2)
    clock.now = T0 + 20
    routes = ROUTES  # removed from the file while in force
    assert teller.tick() == []
    clock.now = T0 + 20 + GRACE_S
    assert teller.tick() == [("deploy", "expired")]
    assert told.summaries("web-chat")[-1] == ("Maintenance window deploy expired early (it "
                                              "was to end at 00:21:40 UTC): it held back 2 "
                                              "triggers")
    clock.now += 1
    assert teller.tick() == []
    assert fake.hlen(NAMES.maintenance_told) == 0  # forgotten, once told


def test_a_window_whose_times_change_in_the_file_is_another() -> None:
    one = Window("deploy", (), T0, T0 + 60)
    assert one.key == Window("deploy", (parse('source="x"'),), T0, T0 + 60).key
    assert one.key != Window("deploy", (), T0, T0 + 120).key
    assert Window("deploy", (), T0, T0 + 60, "abc123").key == "abc123"


@pytest.mark.parametrize(("route", "window", "heard"), [
    ([], [], True), (['source="web"'], [], True), ([], ['source="db1"'], True),
    (['source="web"'], ['source=~"db.*"'], False), (['source=~"db.*"'], ['source="db1"'], True),
    (['source="db1"'], ['source="db2"'], False), (['source="db1"'], ['source!="db1"'], False),
    (['severity="info"'], ["severity>=error"], False),
    (['severity="critical"'], ["severity>=error"], True),
    (['source="web"'], ['component="db"'], True),  # different fields: could both hold
    (['source=~"web.*"'], ['source=~"db.*"'], True),  # two regexes: not judged, told
])
def test_which_routes_hear_of_a_window(route: list[str], window: list[str],
                                       heard: bool) -> None:
    assert told_of.compatible(tuple(map(parse, route)), tuple(map(parse, window))) is heard


def test_hearing_lists_each_channel_once() -> None:
    routes = RoutesFile(routes=(Route("a", (), channels=(Use("team"), Use("x")),
                                      maintenance=True),),
                        channels=(TEAM, Channel("x", "webhook", maintenance=True)))
    assert told_of.hearing(Seen("k", "w", (), T0, T0 + 1), routes) == ["team", "x"]


def test_times_for_a_person() -> None:
    assert told_of.at(T0 + 40, T0) == "00:20:40 UTC"
    assert told_of.at(T0 + 86_400 * 2, T0) == "2026-12-02 00:20 UTC"


def test_the_notice_as_each_channel_shows_it(fake: fakeredis.FakeRedis) -> None:
    clock, told = Clock(), Told()
    Windows(fake, NAMES.maintenance, clock).add("db", ['source="db1"'], T0 + 60, T0 + 120)
    notices(fake, clock, told).tick()
    _, notice = next(iter(told.jobs.values()))
    slack = messages.message(TEAM, notice)
    assert slack["text"].split("\n")[0] == (
        '*🔧 MAINTENANCE [info] Maintenance window db added: will hold triggers matching '
        'source="db1" from 00:21 UTC to 00:22 UTC*')
    hook = messages.message(DB, notice)
    assert hook["notice"]["state"] == "maintenance"
    assert hook["notice"]["custom_details"]["window"] == "db"


def test_the_routes_file_is_read_again_when_it_changes(tmp_path: Path,
                                                      settings: Settings) -> None:
    path = tmp_path / "routes.yml"
    path.write_text("channels: [{name: team, type: webhook, url: 'https://h.example.org/x', "
                    "maintenance: true}]\n")
    path.chmod(0o600)
    watched = Watched(load(path, settings.key_names), settings.key_names)
    assert watched().maintenance == () and watched().channels[0].maintenance
    path.write_text(path.read_text() + "routes: [{name: r, channels: [team], maintenance: "
                    "true}]\nmaintenance: [{name: w, start: 2026-01-01T00:00:00Z, "
                    "end: 2026-01-02T00:00:00Z}]\n")
    os.utime(path, ns=((watched.stamp or 0) + 10**9,) * 2)  # a later change
    found = watched()
    assert [w.name for w in found.maintenance] == ["w"] and found.routes[0].maintenance
    path.write_text("routes: nope\n")  # a file that does not check: the last one stays
    os.utime(path, ns=((watched.stamp or 0) + 10**9,) * 2)
    assert [w.name for w in watched().maintenance] == ["w"]


def test_maintenance_in_the_routes_file_takes_true_or_false(tmp_path: Path,
                                                            settings: Settings) -> None:
    from relay.errors import ConfigError
    path = tmp_path / "routes.yml"
    path.write_text("channels: [{name: c, type: webhook, url: 'https://h.example.org/x', "
                    "maintenance: 1}]\nroutes: [{name: r, channels: [c], maintenance: yes2}]\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as problems:
        load(path, settings.key_names)
    assert "channels[0].maintenance: want true or false" in str(problems.value)
    assert "routes[0].maintenance: want true or false" in str(problems.value)


def test_the_ingress_counts_each_windows_triggers(settings: Settings,
                                                 fake: fakeredis.FakeRedis) -> None:
    import time

    client = create_app(settings, client=fake).test_client()
    now = time.time()
    windows = Windows(fake, NAMES.maintenance, clock=lambda: now)
    one = windows.add("same-name", ['source="db1"'], now - 1, now + 3600)
    two = windows.add("same-name", ['source="db2"'], now - 1, now + 3600)
    client.application.extensions["pd_relay_policy"].set_windows(windows.active())
    body: dict[str, Any] = trigger(payload={"summary": "s", "source": "db1",
                                            "severity": "error"})
    for _ in range(2):
        reply = client.post("/v2/enqueue", json=body)
        assert reply.json["message"] == "Suppressed by maintenance window same-name"
    client.post("/v2/enqueue", json=dict(body, payload={**body["payload"], "source": "db2"}))
    client.application.extensions["pd_relay_tally"].flush()
    assert fake.hget(NAMES.decisions, held_field(one)) == "2"
    assert fake.hget(NAMES.decisions, held_field(two)) == "1"


def test_the_readmes_quiet_hours_recipe_is_a_routes_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """As a user would copy it: the channel muted at night but for critical, hearing of
    maintenance windows; the route paging its night key at night."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    recipe = readme[readme.index("### Recipe: quiet hours"):]
    path = tmp_path / "routes.yml"
    path.write_text(recipe.split("```yaml\n", 1)[1].split("```", 1)[0])
    path.chmod(0o600)
    monkeypatch.setenv("PD_RELAY_SECRET_TEAM_SLACK_URL", "https://hooks.example.org/t")
    found = load(path, ("db-day", "db-night"))
    chat, route = found.channels[0], found.routes[0]
    assert chat.timing.mute == ("night",) and chat.timing.min_severity == "critical"
    assert chat.maintenance and route.night_keys == ("db-night",)
    assert route.timing.mute == ("night",) and found.time_intervals[0].name == "night"
