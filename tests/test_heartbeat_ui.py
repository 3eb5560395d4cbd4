"""The dashboard's Heartbeats pages, status's HEARTBEATS table and ``--json``, and the
/metrics figures, through the real app, command and store on fakeredis."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.routes.config import load
from relay.settings import Settings
from relay.ui.access import COOKIE
from tests.conftest import FAR, UNIX, sign_in

NAMES = Names("pdr")
HOSTILE_BODY = '<script>alert("pwned")</script> & done'


@pytest.fixture
def beats(routed: Settings, tmp_path: Path) -> Settings:
    """The routes file of ``routed`` with two checks."""
    path = tmp_path / "beats.yml"
    path.write_text(routed.routes_file.read_text() + """
heartbeats:
  - {name: nightly-backup, cron: "30 2 * * *", tz: Europe/Berlin, grace: 30m, keys: [key-1],
     summary: Nightly backup did not run}
  - {name: watchdog, period: 2m, grace: 1m, keys: [key-2], watchdog: ['alertname="Watchdog"']}
""")
    return replace(routed, routes_file=path)


@pytest.fixture
def ui(beats: Settings, fake: fakeredis.FakeRedis) -> FlaskClient:
    return create_app(beats, client=fake).test_client()


def checks(settings: Settings) -> dict[str, Check]:
    return {c.name: c for c in load(settings.routes_file, settings.key_names).heartbeats}


def test_a_viewer_sees_every_check_and_its_state(ui, beats, fake, tokens) -> None:
    store = Heartbeats(fake, NAMES)
    found = checks(beats)
    store.ping(found["watchdog"], "success")
    store.ping(found["nightly-backup"], "fail", exit_status=3)
    store.add(Check("added-later", grace_s=60, period_s=300, keys=("key-3",), origin="cli"))
    assert ui.get("/ui/heartbeats").status_code == 401  # nobody signed in
    sign_in(ui, tokens["viewer"])
    page = ui.get("/ui/heartbeats")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "default-src 'self'" in page.headers[
        "Content-Security-Policy"]
    assert 'href="/ui/heartbeats" aria-current="page"' in text  # in the navigation
    rows = text.split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]
    assert [r.split('href="/ui/heartbeats/')[1].split('"')[0] for r in rows] == [
        "nightly-backup", "watchdog", "added-later"]
    backup, watchdog, later = rows
    assert 'class="blocked"' in backup and ">down<" in backup and "UTC" in backup
    assert ">up<" in watchdog and "ago (success)" in watchdog and "in 2m" in watchdog
    assert ">new<" in later and "never" in later and "added at run time" in later


def test_a_checks_page_shows_its_pings_escaped(ui, beats, fake, tokens) -> None:
    store = Heartbeats(fake, NAMES)
    watchdog = checks(beats)["watchdog"]
    store.ping(watchdog, "start", by="cron-host")
    store.ping(watchdog, "success", body=HOSTILE_BODY.encode(), by="cron-host")
    sign_in(ui, tokens["viewer"])
    page = ui.get("/ui/heartbeats/watchdog")
    text = page.get_data(as_text=True)
    assert page.status_code == 200, text[:500]
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#34;pwned&#34;)" in text
    assert text.index("success") < text.index(">start<")  # newest first
    assert "alertname=&#34;Watchdog&#34;" in text and "heartbeat:watchdog" in text
    assert "critical: Watchdog silent: heartbeat watchdog is down" in text  # pages.py's
    assert "last 10 pings, the newest with as much of its body as takes 10000 bytes stored" in text
    backup = ui.get("/ui/heartbeats/nightly-backup").get_data(as_text=True)
    assert "critical: Nightly backup did not run" in backup and "keys key-1" in backup
    missing = ui.get("/ui/heartbeats/nope")
    assert missing.status_code == 404 and "no heartbeat check nope" in missing.get_data(
        as_text=True)
    ui.delete_cookie(COOKIE)  # signed out: nobody, not even a viewer, far or near
    assert ui.get("/ui/heartbeats/watchdog", environ_base=FAR).status_code == 401


def test_no_checks_says_how_to_add_one(api, tokens) -> None:
    sign_in(api, tokens["viewer"])
    page = api.get("/ui/heartbeats")
    assert page.status_code == 200 and b"No heartbeat checks" in page.data


def metrics(client: FlaskClient) -> dict[str, float]:
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_metrics_of_the_checks(ui, beats, fake) -> None:
    Heartbeats(fake, NAMES).ping(checks(beats)["nightly-backup"], "fail")
    found = metrics(ui)
    assert found['pd_relay_heartbeat_up{check="nightly-backup"}'] == 0
    assert found['pd_relay_heartbeat_up{check="watchdog"}'] == 1
    assert 0 <= found['pd_relay_heartbeat_last_ping_age_seconds{check="nightly-backup"}'] < 5
    assert found['pd_relay_heartbeats{state="down"}'] == 1
    assert found['pd_relay_heartbeats{state="new"}'] == 1
    assert found["pd_relay_heartbeat_evaluated_age_seconds"] == float("inf")


def status(settings: Settings, fake: Any, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from relay.cli import main

    monkeypatch.setattr("relay.commands.operations.connect", lambda s, **kw: fake)
    monkeypatch.setattr("relay.cli.Settings.from_env", lambda: settings)
    monkeypatch.setattr("relay.formats.connect", lambda s, **kw: fake)
    monkeypatch.setattr("relay.cli.configure", lambda *args: None)
    assert main(["status", *args]) == 0
    return capsys.readouterr().out


def test_status_lists_the_checks(beats, fake, monkeypatch, capsys) -> None:
    Heartbeats(fake, NAMES).ping(checks(beats)["watchdog"], "success")
    Heartbeats(fake, NAMES).ping(checks(beats)["nightly-backup"], "fail")
    out = status(beats, fake, monkeypatch, capsys)
    table = out.split("HEARTBEAT ", 1)[1].splitlines()
    assert table[0].split() == ["STATE", "LAST", "PING", "NEXT", "DUE", "DOWN", "SINCE",
                                "SCHEDULE"]
    assert table[1].split()[:2] == ["nightly-backup", "DOWN"] and "UTC" in table[1]
    assert table[2].split()[:2] == ["watchdog", "up"] and "every 2m, grace 1m" in table[2]
    shown = json.loads(status(beats, fake, monkeypatch, capsys, "--json"))
    assert {"keys", "routes", "sources", "alarms", "shed", "replication"} <= set(shown)
    backup, watchdog = shown["heartbeats"]
    assert backup["name"] == "nightly-backup" and backup["state"] == "down"
    assert backup["down_since"] is not None and backup["cron"] == "30 2 * * *"
    assert watchdog["state"] == "up" and watchdog["next_due_in_seconds"] > 100


def test_status_without_checks_prints_no_heartbeats(routed, fake, monkeypatch, capsys) -> None:
    out = status(routed, fake, monkeypatch, capsys)
    assert "HEARTBEAT" not in out and "KEY" in out
    assert json.loads(status(routed, fake, monkeypatch, capsys, "--json"))["heartbeats"] == []


def test_the_list_puts_what_needs_attention_first_and_filters_by_state(ui, beats, fake,
                                                                         tokens, monkeypatch
                                                                         ) -> None:
    store = Heartbeats(fake, NAMES)
    found = checks(beats)
    for n in range(4):
        store.add(Check(f"extra-{n}", grace_s=60, period_s=300, keys=("key-3",), origin="cli"))
    store.ping(found["watchdog"], "success")
    store.ping(found["nightly-backup"], "success")
    store.ping(Check("extra-2", grace_s=60, period_s=300, keys=("key-3",)), "fail")
    sign_in(ui, tokens["viewer"])

    def listed(path: str) -> tuple[list[str], str]:
        text = ui.get(path).get_data(as_text=True)
        body = text.split("<tbody>")[1].split("</tbody>")[0] if "<tbody>" in text else ""
        return [r.split('href="/ui/heartbeats/')[1].split('"')[0]
                for r in body.split("<tr")[1:]], text

    names, text = listed("/ui/heartbeats")
    assert names == ["extra-2", "nightly-backup", "watchdog", "extra-0", "extra-1", "extra-3"]
    assert "1 down, 2 up, 3 new" in text
    assert listed("/ui/heartbeats?state=down")[0] == ["extra-2"]
    assert listed("/ui/heartbeats?state=up")[0] == ["nightly-backup", "watchdog"]
    bad = ui.get("/ui/heartbeats?state=lost")
    assert bad.status_code == 400 and b"state: want one of new, up, late" in bad.data
    monkeypatch.setattr("relay.ui.heartbeats.PAGE_ROWS", 2)
    names, text = listed("/ui/heartbeats")
    assert names == ["extra-2", "nightly-backup"]
    assert "4 more not shown" in text and "pd-relay status --json" in text


def test_status_and_the_page_say_when_the_relay_was_away(ui, beats, fake, tokens,
                                                         monkeypatch, capsys) -> None:
    seconds, _ = fake.time()
    now_ms = int(seconds) * 1000
    fake.hset(NAMES.heartbeat_gap, mapping={  # as the evaluation writes it (store.gap)
        "at": now_ms - 10_000, "since": now_ms - 10_000, "gap_ms": 95_000,
        "reason": "evaluator"})
    out = status(beats, fake, monkeypatch, capsys)
    assert "HEARTBEATS: the relay was away 1m35s (no evaluation ran;" in out
    assert "every check got one grace from" in out
    shown = json.loads(status(beats, fake, monkeypatch, capsys, "--json"))["heartbeat_gap"]
    assert shown["gap_s"] == 95 and shown["reason"] == "evaluator"
    sign_in(ui, tokens["viewer"])
    assert "the relay was away 1m35s" in ui.get("/ui/heartbeats").get_data(as_text=True)
    # once the longest grace (30m, nightly-backup's) has passed, nothing is said
    fake.hset(NAMES.heartbeat_gap, mapping={"at": now_ms - 1_900_000,
                                            "since": now_ms - 1_900_000})
    assert "the relay was away" not in status(beats, fake, monkeypatch, capsys)
    assert json.loads(status(beats, fake, monkeypatch, capsys, "--json"))[
        "heartbeat_gap"] is None


def test_the_overview_says_which_checks_are_down(ui, beats, fake, tokens) -> None:
    sign_in(ui, tokens["viewer"])
    assert "Heartbeat checks down" not in ui.get("/ui/").get_data(as_text=True)
    Heartbeats(fake, NAMES).ping(checks(beats)["nightly-backup"], "fail")
    text = ui.get("/ui/").get_data(as_text=True)
    assert "Heartbeat checks down" in text and "nightly-backup" in text
    assert 'href="/ui/heartbeats?state=down"' in text


def test_after_the_evaluators_first_round(ui, beats, fake, tokens, monkeypatch,
                                          capsys) -> None:
    """core's Evaluator stamps its clock and its start: the figure of its age and the
    note of the grace every check got come from what it wrote."""
    from relay.heartbeats.catalog import Catalog
    from relay.heartbeats.evaluator import Evaluator

    assert metrics(ui)["pd_relay_heartbeat_evaluated_age_seconds"] == float("inf")
    routes = load(beats.routes_file, beats.key_names)
    seconds, _ = fake.time()
    ten_ago = int(seconds) - 10.0  # its round ran 10 s ago (its clock stands for Redis's)
    Evaluator(fake, NAMES, Catalog(routes, Heartbeats(fake, NAMES)),
              lambda page, check: None, clock=lambda: ten_ago, watch_ingress=False).round()
    assert 10 <= metrics(ui)["pd_relay_heartbeat_evaluated_age_seconds"] < 15
    assert "HEARTBEATS: the evaluation started" in status(beats, fake, monkeypatch, capsys)


def test_with_redis_down_the_pages_are_a_503_and_metrics_still_answer(beats, tokens
                                                                      ) -> None:
    """Promise 1: the Heartbeats pages read Redis; down, a 503 with Retry-After, never a
    500; /metrics answers without the heartbeat figures (missing, not zero)."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    down = create_app(beats, client=client).test_client()
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert down.get("/ui/heartbeats", headers=bearer).status_code == 200
    server.connected = False
    for path in ("/ui/heartbeats", "/ui/heartbeats/watchdog", "/ui/"):
        page = down.get(path, headers=bearer)
        assert page.status_code == 503 and page.headers.get("Retry-After"), path
    scraped = down.get("/metrics", environ_base=UNIX)
    assert scraped.status_code == 200 and b"pd_relay_heartbeat_up{" not in scraped.data


def test_status_json_agrees_with_heartbeat_list_json(beats, fake, monkeypatch,
                                                     capsys) -> None:
    """One check, one shape: every field ``pd-relay heartbeat list --json`` gives (but
    whether it has a token) is in status's, with the same value (times ISO 8601, UTC);
    the relay's gap as its relay_gap."""
    from relay.heartbeats.commands import row

    store = Heartbeats(fake, NAMES)
    found = checks(beats)
    store.ping(found["watchdog"], "success")
    store.ping(found["nightly-backup"], "fail", exit_status=1)
    seconds, _ = fake.time()
    fake.hset(NAMES.heartbeat_gap, mapping={"at": int(seconds) * 1000, "gap_ms": 20_000,
                                            "since": int(seconds) * 1000,
                                            "reason": "evaluator"})
    shown = json.loads(status(beats, fake, monkeypatch, capsys, "--json"))
    listed = [row(check, state, False) for check, state in
              zip(found.values(), store.states(list(found.values())), strict=True)]
    for mine, theirs in zip(shown["heartbeats"], listed, strict=True):
        theirs.pop("token")
        assert {k: mine.get(k) for k in theirs} == theirs
    assert shown["heartbeats"][0]["last_ping_at"].endswith("Z")
    assert shown["heartbeat_gap"]["at"].endswith("Z") and shown["heartbeat_gap"][
        "gap_s"] == 20
