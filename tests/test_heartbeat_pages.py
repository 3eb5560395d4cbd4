"""A heartbeat's page made an event on the ordinary path (relay.heartbeats.pages), without
processes (fakeredis): what the trigger and its resolve carry, where they go, whose
incident it is, a full queue, and the story ``trace heartbeat:<name>`` tells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.channels.notice import Entry
from relay.errors import QueueFull
from relay.heartbeats.model import Check, Page
from relay.heartbeats.pages import Pages
from relay.history.search import Query, search
from relay.keys import choose_key, key_id
from relay.names import Names
from relay.owners import RELAY, Owned
from relay.router import Route, incident_id
from relay.routes.channels import Channel, Use
from relay.routes.config import RoutesFile
from relay.routes.matchers import parse
from relay.settings import Settings
from relay.store import EventStore, Record, now_ms

NAMES = Names("pdr")
DOWN_AT = 1_764_921_600.0  # 2025-12-05T08:00:00Z


@pytest.fixture
def setup(tmp_path: Path, keys: tuple[str, ...]):
    """Keys db, ops and web; channels chat (any severity) and mail (critical only)."""
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n{keys[1]} ops\n{keys[2]} web\n")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt")})
    channels = (Channel("chat", "slack"), Channel("mail", "email", min_severity="critical"))
    return settings, RoutesFile(channels=channels)


def down(name: str = "backup", reason: str = "missed", **details: object) -> Page:
    found: dict[str, object] = {"last_ping_at": DOWN_AT - 70, "expected_at": DOWN_AT - 10,
                                "late_by_s": 10.0, "last_body": "", "exit_status": None}
    found.update(details)
    return Page(name, "trigger", 1, reason, DOWN_AT, found)


def up(name: str = "backup") -> Page:
    return Page(name, "resolve", 1, "", DOWN_AT + 30, {"last_ping_at": DOWN_AT + 30})


def queued(fake, settings: Settings, name: str) -> list[dict[str, object]]:
    kid = key_id(settings.routing_keys[settings.key_names.index(name)])
    return [Record.decode(raw).event for raw in fake.lrange(NAMES.queue(kid), 0, -1)]


def test_a_down_check_is_a_trigger_on_one_of_its_keys_with_its_details(setup, fake) -> None:
    settings, routes = setup
    check = Check("backup", grace_s=60, period_s=3600, severity="error",
                  keys=("ops", "web"), channels=(Use("chat"), Use("mail")))
    Pages(fake, NAMES, settings, routes).send(down(last_body="tar: disk full\n",
                                                   exit_status=2), check)
    chosen = choose_key(["ops", "web"], "heartbeat:backup")
    [event] = queued(fake, settings, chosen)
    assert queued(fake, settings, "db") == []
    assert event["event_action"] == "trigger" and event["dedup_key"] == "heartbeat:backup"
    payload = event["payload"]
    assert payload["summary"] == "Heartbeat backup is down"
    assert payload["severity"] == "error"  # the check's: storm mode sorts by it
    assert (payload["component"], payload["class"]) == ("pd-relay", "heartbeat")
    assert payload["timestamp"] == "2025-12-05T08:00:00.000Z"  # when it went down
    assert payload["custom_details"] == {
        "check": "backup", "reason": "missed", "last_ping_at": "2025-12-05T07:58:50.000Z",
        "expected_at": "2025-12-05T07:59:50.000Z", "late_by_s": 10.0,
        "last_body": "tar: disk full\n", "exit_status": 2}
    # the incident is the relay's: no sender can resolve it
    assert fake.hget(NAMES.owners, incident_id("heartbeat:backup")) == RELAY
    # mail takes critical only: chat alone hears of an error
    [notice] = [Entry.parse(e) for e in fake.lrange(NAMES.outbox, 0, -1)]
    assert notice.header["c"] == ["chat"] and notice.header["r"] == "heartbeat:backup"


def test_its_resolve_goes_where_the_trigger_went_and_to_the_same_channels(setup, fake) -> None:
    settings, routes = setup
    check = Check("backup", grace_s=60, period_s=3600, keys=("ops", "web"),
                  channels=(Use("chat"),))
    pages = Pages(fake, NAMES, settings, routes)
    pages.send(down(), check)
    pages.send(up(), check)
    chosen = choose_key(["ops", "web"], "heartbeat:backup")
    assert queued(fake, settings, chosen)[1] == {"event_action": "resolve",
                                                 "dedup_key": "heartbeat:backup"}
    notices = [Entry.parse(e) for e in fake.lrange(NAMES.outbox, 0, -1)]
    assert [n.header["c"] for n in notices] == [["chat"], None]  # None: where it went


def test_a_sender_cannot_resolve_a_heartbeats_incident(setup, fake) -> None:
    settings, routes = setup
    check = Check("backup", grace_s=60, period_s=3600, keys=("db",))
    Pages(fake, NAMES, settings, routes).send(down(), check)
    store = EventStore(fake, NAMES, settings)
    resolve = Record("alert", {"event_action": "resolve", "dedup_key": "heartbeat:backup"},
                     now_ms())
    route = Route(1, incident_id("heartbeat:backup"), "resolve", "default")
    [answer] = store.enqueue([[(route, resolve.encode(), b"", b"", "s:cron")]])
    assert isinstance(answer, Owned)
    assert len(queued(fake, settings, "db")) == 1


def test_summary_severity_and_the_watchdogs_default(setup, fake) -> None:
    settings, routes = setup
    pages = Pages(fake, NAMES, settings, routes)
    pages.send(down("nightly"), Check("nightly", 60, 3600, summary="Nightly ETL missed",
                                      severity="warning", keys=("db",)))
    watchdog = Check("prom", 60, 120, keys=("db",),
                     watchdog=(parse('custom_details.alertname="Watchdog"'),))
    pages.send(down("prom"), watchdog)
    first, second = queued(fake, settings, "db")
    assert first["payload"]["summary"] == "Nightly ETL missed"
    assert first["payload"]["severity"] == "warning"
    assert second["payload"]["summary"].startswith("Watchdog silent")
    assert second["payload"]["severity"] == "critical"


def test_the_last_body_is_cut_to_its_first_kilobyte(setup, fake) -> None:
    settings, routes = setup
    check = Check("backup", 60, 3600, keys=("db",))
    Pages(fake, NAMES, settings, routes).send(down(last_body="é" * 5000), check)
    [event] = queued(fake, settings, "db")
    body = event["payload"]["custom_details"]["last_body"]
    assert len(body.encode()) <= 1024 and body.startswith("éé")


def test_a_check_without_keys_or_channels_goes_on_any_key(setup, fake) -> None:
    settings, routes = setup
    Pages(fake, NAMES, settings, routes).send(down(), Check("backup", 60, 3600))
    chosen = choose_key(list(settings.key_names), "heartbeat:backup")
    assert [e["dedup_key"] for e in queued(fake, settings, chosen)] == ["heartbeat:backup"]


def test_a_full_queue_raises_and_stores_nothing(setup, fake) -> None:
    """The evaluator then keeps the page in its outbox and hands it again next round."""
    from dataclasses import replace

    settings, routes = setup
    full = replace(settings, queue_max_events=1)
    check = Check("backup", 60, 3600, keys=("db",), channels=(Use("chat"),))
    pages = Pages(fake, NAMES, full, routes)
    pages.send(down("other"), Check("other", 60, 3600, keys=("db",)))
    with pytest.raises(QueueFull):
        pages.send(down(), check)
    assert [e["dedup_key"] for e in queued(fake, settings, "db")] == ["heartbeat:other"]
    assert fake.llen(NAMES.outbox) == 0


def test_the_history_tells_why_it_paged_and_why_it_resolved(setup, fake) -> None:
    settings, routes = setup
    check = Check("backup", 60, 3600, keys=("db",))
    pages = Pages(fake, NAMES, settings, routes)
    pages.send(down(reason="fail", exit_status=3), check)
    pages.send(up(), check)
    stories = search(fake, NAMES, Query(dedup_key="heartbeat:backup", limit=0))[::-1]
    assert [s.accepted["a"] for s in stories] == ["trigger", "resolve"]
    first, second = (s.as_json(settings.key_names) for s in stories)
    assert first["route"] == "heartbeat:backup" and first["source"] == "pd-relay"
    assert first["key"] == "db"
    why = first["steps"][0]["heartbeat"]
    assert "fail" in why and "2025-12-05T07:58:50.000Z" in why and "exit status 3" in why
    assert "2025-12-05T08:00:30.000Z" in second["steps"][0]["heartbeat"]


def test_trace_tells_a_heartbeats_story(setup, fake, monkeypatch, capsys) -> None:
    from relay.commands import trace

    settings, routes = setup
    monkeypatch.setattr(trace, "connect", lambda _settings: fake)
    check = Check("backup", 60, 3600, keys=("db",))
    pages = Pages(fake, NAMES, settings, routes)
    pages.send(down(), check)
    pages.send(up(), check)
    args = type("Args", (), {"dedup_key": "heartbeat:backup", "json": False})()
    assert trace.command(settings, args) == 0
    out = capsys.readouterr().out
    assert "2 event(s)" in out
    assert "route heartbeat:backup, from pd-relay (heartbeat)" in out
    assert "no ping by its deadline: last ping 2025-12-05T07:58:50.000Z" in out
    assert "up again: a success ping at 2025-12-05T08:00:30.000Z" in out
    args.json = True
    trace.command(settings, args)
    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["steps"][0]["adapter"] == "heartbeat"


def test_a_check_whose_keys_left_the_keys_file_still_pages(setup, fake) -> None:
    """Issue 28's review: a run-time check (checked against the keys file when added)
    whose keys were all taken out of the keys file since paged only its channels: no
    PagerDuty incident at all. It goes on a key in service, as one naming no key."""
    settings, routes = setup
    check = Check("backup", 60, 3600, keys=("gone",), channels=(Use("chat"),), origin="cli")
    Pages(fake, NAMES, settings, routes).send(down(), check)
    chosen = choose_key(list(settings.key_names), "heartbeat:backup")
    assert [e["dedup_key"] for e in queued(fake, settings, chosen)] == ["heartbeat:backup"]


def test_a_new_incident_leaves_out_the_checks_draining_keys(setup, fake) -> None:
    """As a route's pool: a key marked ``drain`` takes no new incident."""
    from dataclasses import replace

    settings, routes = setup
    check = Check("backup", 60, 3600, keys=("db", "ops", "web"))
    chosen = choose_key(["db", "ops", "web"], "heartbeat:backup")
    draining = replace(settings, draining_keys=frozenset(
        {settings.routing_keys[settings.key_names.index(chosen)]}))
    Pages(fake, NAMES, draining, routes).send(down(), check)
    others = [name for name in ("db", "ops", "web") if name != chosen]
    assert queued(fake, settings, chosen) == []
    [event] = queued(fake, settings, choose_key(others, "heartbeat:backup"))
    assert event["dedup_key"] == "heartbeat:backup"


def test_a_removed_checks_resolve_goes_where_its_trigger_went_and_says_why(setup, fake) -> None:
    settings, routes = setup
    pages = Pages(fake, NAMES, settings, routes)
    pages.send(down(), Check("backup", 60, 3600, keys=("db",)))
    pages.send(Page("backup", "resolve", 1, "removed", DOWN_AT + 60, {}),
               Check("backup", 0.0))  # the evaluator's stand-in: the check is gone
    assert [e["event_action"] for e in queued(fake, settings, "db")] == ["trigger", "resolve"]
    stories = search(fake, NAMES, Query(dedup_key="heartbeat:backup", limit=0))[::-1]
    second = stories[1].as_json(settings.key_names)
    assert second["steps"][0]["heartbeat"] == \
        "the check was removed at 2025-12-05T08:01:00.000Z"


def test_trace_says_where_the_check_is_now_even_before_its_page_is_stored(
        setup, fake, monkeypatch, capsys) -> None:
    """A check down whose trigger still waits in the outbox (its key's queue full) has no
    event yet: trace says its state, its last ping and the pages waiting."""
    from relay.commands import trace
    from relay.heartbeats.store import Heartbeats

    settings, _routes = setup
    monkeypatch.setattr(trace, "connect", lambda _settings: fake)
    check = Check("backup", 60, 3600, keys=("db",))
    Heartbeats(fake, NAMES).ping(check, "fail", b"disk full", exit_status=2)
    args = type("Args", (), {"dedup_key": "heartbeat:backup", "json": False})()
    assert trace.command(settings, args) == 1  # no event yet
    out = capsys.readouterr().out
    assert "check backup: down since " in out
    assert "last ping " in out and "(fail, exit status 2)" in out
    assert "1 page waiting to be stored (trigger)" in out
    args.dedup_key = "heartbeat:nothing"
    trace.command(settings, args)
    assert "check" not in capsys.readouterr().out  # no such check: nothing said of it
