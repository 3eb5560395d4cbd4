"""``/ping/...`` (issue 28): signals, exit statuses, bodies, who may ping (a source's API
key or the check's ping token), the refusals and what they give away, Redis down."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import fakeredis
import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.auth import digest, new_token
from relay.heartbeats.config import label_matcher
from relay.heartbeats.model import BODY_LIMIT, Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.pingchecks import MARK_TTL_S, Following
from relay.routes.policy import Policy
from relay.settings import Settings
from relay.stack.processes import wait_until
from tests.pingfakes import FakeChecks, FakePings

TOKEN = "hb_" + "x" * 40  # a check's ping token, as long as core's
CHECKS = FakeChecks(Check("backup", grace_s=300, period_s=86_400, sources=("cron",)),
                    Check("open", grace_s=60, period_s=60))


@pytest.fixture
def api_keys() -> dict[str, str]:
    return {"cron": new_token()[0], "other": new_token()[0]}


@pytest.fixture
def pinged(settings: Settings, tmp_path: Path, api_keys: dict[str, str]) -> Settings:
    path = tmp_path / "routes.yml"
    path.write_text("sources:\n" + "".join(
        f"  - name: {name}\n    api_keys: [\"{digest(key)}\"]\n" for name, key in api_keys.items()))
    return replace(settings, routes_file=path, allow_anonymous=False,
                   key_names=("key-1", "key-2", "key-3"))


@pytest.fixture
def store() -> FakePings:
    pings = FakePings()
    pings.new_token("backup", TOKEN)
    return pings


@pytest.fixture
def http(pinged: Settings, fake: fakeredis.FakeRedis, store: FakePings) -> FlaskClient:
    return create_app(pinged, client=fake, checks=CHECKS, pings=store).test_client()


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_success_ping_by_an_allowed_source_answers_the_state(http, store, api_keys,
                                                               method) -> None:
    reply = http.open("/ping/backup", method=method, headers=auth(api_keys["cron"]))
    assert reply.status_code == 200, reply.json
    assert reply.json == {"check": "backup", "state": "up",
                          "expected_at": "2026-11-30T00:53:20.000Z",
                          "down_at": "2026-11-30T00:58:20.000Z"}
    assert reply.headers["Ping-Body-Limit"] == str(BODY_LIMIT)
    assert store.calls == [{"name": "backup", "signal": "success", "body": b"",
                            "by": "cron", "exit_status": None}]


def test_head_answers_headers_only_and_still_pings(http, store, api_keys) -> None:
    reply = http.head("/ping/backup", headers=auth(api_keys["cron"]))
    assert reply.status_code == 200 and reply.get_data() == b""
    assert reply.headers["Ping-Body-Limit"] == str(BODY_LIMIT)
    assert [call["signal"] for call in store.calls] == ["success"]


@pytest.mark.parametrize(("path", "signal", "status"), [
    ("/ping/backup/start", "start", None), ("/ping/backup/fail", "fail", None),
    ("/ping/backup/0", "success", 0), ("/ping/backup/3", "fail", 3),
    ("/ping/backup/255", "fail", 255),
])
def test_signals_and_exit_statuses(http, store, api_keys, path, signal, status) -> None:
    assert http.post(path, headers=auth(api_keys["cron"])).status_code == 200
    assert [(c["signal"], c["exit_status"]) for c in store.calls] == [(signal, status)]


@pytest.mark.parametrize("word", ["256", "-1", "1000", "9" * 5000, "log"])
def test_a_bad_exit_status_or_signal_is_a_400_saying_why(http, store, api_keys, word) -> None:
    reply = http.post(f"/ping/backup/{word}", headers=auth(api_keys["cron"]))
    assert reply.status_code == 400 and reply.is_json
    assert "0..255" in reply.json["errors"][0]
    assert store.calls == []


def test_the_body_is_kept_up_to_the_limit(http, store, api_keys) -> None:
    body = b"line\n" * 3000  # 15,000 bytes
    reply = http.post("/ping/backup/fail", data=body, headers=auth(api_keys["cron"]))
    assert reply.status_code == 200
    assert store.calls[0]["body"] == body[:BODY_LIMIT]


def test_a_body_past_the_ingress_cap_is_a_413_not_a_ping(http, store, api_keys,
                                                        pinged) -> None:
    body = b"x" * (pinged.max_body_bytes + 1)
    reply = http.post("/ping/backup", data=body, headers=auth(api_keys["cron"]))
    assert reply.status_code == 413 and reply.is_json
    assert store.calls == []


def test_no_api_key_is_a_401(http, store) -> None:
    reply = http.post("/ping/backup")
    assert reply.status_code == 401 and reply.headers["WWW-Authenticate"]
    assert "ping token" in reply.json["errors"][0]
    assert store.calls == []


def test_an_unknown_api_key_is_a_401(http, store) -> None:
    reply = http.post("/ping/backup", headers=auth(new_token()[0]))
    assert reply.status_code == 401 and store.calls == []


def test_a_source_the_check_does_not_list_is_a_403_saying_why(http, store, api_keys) -> None:
    reply = http.post("/ping/backup", headers=auth(api_keys["other"]))
    assert reply.status_code == 403
    assert reply.json["errors"] == ["check backup: source other may not ping it (its "
                                    "sources: cron)"]
    assert store.calls == []


def test_a_check_without_sources_takes_any_source(http, store, api_keys) -> None:
    assert http.get("/ping/open", headers=auth(api_keys["other"])).status_code == 200


def test_an_unknown_check_is_a_404_for_a_known_sender_only(http, store, api_keys) -> None:
    reply = http.post("/ping/nightly", headers=auth(api_keys["cron"]))
    assert reply.status_code == 404 and reply.json["errors"] == ["no check named nightly"]
    anonymous = http.post("/ping/nightly")
    assert anonymous.status_code == 401  # who has no key learns nothing of the names


def test_a_ping_token_in_the_path_pings_its_check(http, store) -> None:
    assert http.get(f"/ping/{TOKEN}/backup").status_code == 200
    assert http.post(f"/ping/{TOKEN}/backup/fail", data=b"disk full").status_code == 200
    assert http.head(f"/ping/{TOKEN}/backup/7").status_code == 200
    assert [(c["signal"], c["body"], c["by"], c["exit_status"]) for c in store.calls] == [
        ("success", b"", "ping-token", None), ("fail", b"disk full", "ping-token", None),
        ("fail", b"", "ping-token", 7)]


def test_a_wrong_token_and_an_unknown_check_answer_alike(http, store) -> None:
    """With a token, the token is checked before the name: a wrong token for a check that
    exists and any token for one that does not get the same 401, so nobody without a
    token can tell which names exist."""
    wrong = http.get(f"/ping/{'y' * 40}/backup")
    unknown = http.get(f"/ping/{TOKEN}/nightly")
    no_token_check = http.get(f"/ping/{TOKEN}/open")
    assert wrong.status_code == unknown.status_code == no_token_check.status_code == 401
    assert wrong.json == unknown.json == no_token_check.json
    assert store.calls == []


def test_a_ping_token_never_reaches_the_log(http, store, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    http.get(f"/ping/{TOKEN}/backup")
    http.get(f"/ping/{TOKEN}/nightly")  # refused: logged with its path
    store.down = True
    http.get(f"/ping/{TOKEN}/backup")  # Redis down: logged with its path
    assert caplog.records and TOKEN not in caplog.text


def test_redis_down_is_a_503_with_retry_after(http, store, api_keys) -> None:
    store.down = True
    for reply in (http.post("/ping/backup", headers=auth(api_keys["cron"])),
                  http.get(f"/ping/{TOKEN}/backup")):
        assert reply.status_code == 503 and int(reply.headers["Retry-After"]) > 0
        assert reply.is_json and reply.json["status"] == "unavailable"


def test_a_routing_key_sender_may_ping_a_check_without_sources(http, store, keys) -> None:
    assert http.post("/ping/open", headers={"X-Routing-Key": keys[0]}).status_code == 200
    refused = http.post("/ping/backup", headers={"X-Routing-Key": keys[0]})
    assert refused.status_code == 403 and "routing-key" in refused.json["errors"][0]


def test_anonymous_senders_ping_checks_without_sources_when_allowed(
        pinged, fake, store) -> None:
    http = create_app(replace(pinged, allow_anonymous=True), client=fake, checks=CHECKS,
                      pings=store).test_client()
    assert http.post("/ping/open").status_code == 200
    assert http.post("/ping/backup").status_code == 403


@pytest.mark.parametrize("path", ["/ping/", "/ping/backup/", "/ping//backup",
                                  "/ping/a/b/c/d", "/ping/a/b/fail/x"])
def test_malformed_paths_are_a_404(http, store, api_keys, path) -> None:
    reply = http.post(path, headers=auth(api_keys["cron"]))
    assert reply.status_code == 404 and reply.is_json and store.calls == []


def test_the_ingress_marks_itself_alive_and_follows_the_checks(pinged, fake) -> None:
    """Every beat: the liveness mark on Redis's time with a TTL, the run-time checks read
    again, and a reloaded routes file's checks in force."""
    names, stop = Names(), threading.Event()
    policy = Policy(pinged)
    heartbeats = Heartbeats(fake, names)
    following = Following(policy, heartbeats)
    thread = following.follow(stop, every=0.01)
    wait_until(lambda: fake.exists(names.heartbeat_ingress), 5, "the first mark")
    seconds, micros = fake.time()
    assert abs(int(fake.get(names.heartbeat_ingress)) - (seconds * 1000 + micros // 1000)) < 5000
    assert 0 < fake.pttl(names.heartbeat_ingress) <= MARK_TTL_S * 1000
    heartbeats.add(Check("added", grace_s=60, period_s=60, origin="cli"))
    wait_until(lambda: following.get("added"), 5, "the run-time check")
    assert following.get("filed") is None
    pinged.routes_file.write_text(pinged.routes_file.read_text() + (
        "heartbeats:\n  - {name: filed, period: 5m, keys: [key-1]}\n"))
    assert policy.reload()
    wait_until(lambda: following.get("filed"), 5, "the reloaded file's check")
    assert following.get("added") is not None
    fake.delete(names.heartbeat_ingress)
    wait_until(lambda: fake.exists(names.heartbeat_ingress), 5, "the mark set again")
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_real_store_pings_through_the_app(pinged, fake, api_keys) -> None:
    """The app with core's store and catalog (no fakes): a routes-file check pinged by
    API key and by the token the store made, its state read back from Redis."""
    pinged.routes_file.write_text(pinged.routes_file.read_text() + (
        "heartbeats:\n  - {name: backup, period: 1h, grace: 5m, keys: [key-1], sources: [cron]}\n"))
    heartbeats = Heartbeats(fake, Names())
    token = heartbeats.new_token("backup")
    http = create_app(pinged, client=fake).test_client()
    first = http.post("/ping/backup/start", headers=auth(api_keys["cron"]), data=b"begin")
    assert first.status_code == 200 and first.json["state"] == "started", first.json
    done = http.get(f"/ping/{token}/backup")
    assert done.status_code == 200 and done.json["state"] == "up" and done.json["down_at"]
    assert [p["signal"] for p in heartbeats.recent_pings("backup", 5)][:2] in (
        ["success", "start"], ["start", "success"])
    assert http.get(f"/ping/{token}x/backup").status_code == 401
    assert http.get("/ping/backup", headers=auth(api_keys["other"])).status_code == 403


def test_a_run_time_check_it_cannot_read_stops_neither_the_mark_nor_the_others(
        pinged, fake) -> None:
    """A record of Names.heartbeats this release cannot read (here JSON, but not an
    object) is left out and said; the others are read and the liveness mark goes on.
    Before: AttributeError escaped the reading thread, which died: the mark was never set
    again, and the evaluator, reading its absence as the ingress being down, gave every
    check one more grace at every round, so no check could ever go down."""
    names, stop = Names(), threading.Event()
    heartbeats = Heartbeats(fake, names)
    fake.hset(names.heartbeats, "broken", "[]")
    following = Following(Policy(pinged), heartbeats)
    thread = following.follow(stop, every=0.01)
    try:
        wait_until(lambda: fake.exists(names.heartbeat_ingress), 5, "the first mark")
        heartbeats.add(Check("added", grace_s=60, period_s=60, origin="cli"))
        wait_until(lambda: following.get("added"), 5, "the readable run-time check")
        fake.delete(names.heartbeat_ingress)
        wait_until(lambda: fake.exists(names.heartbeat_ingress), 5, "the mark set again")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)


def test_before_the_run_time_checks_are_read_a_ping_or_a_watchdog_is_a_503(
        pinged, api_keys) -> None:
    """An ingress started while Redis was down knows none of the run-time checks. Before:
    a ping by API key of one was a 404 (curl --retry gives up on a 404: the ping was
    lost where a 503 is retried), and once Redis was back, until the next read, a Watchdog
    alert of one was stored as an event (an incident that never resolves)."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    server.connected = False
    app = create_app(pinged, client=client)
    http = app.test_client()
    nightly = http.post("/ping/nightly", headers=auth(api_keys["cron"]))
    assert nightly.status_code == 503 and int(nightly.headers["Retry-After"]) > 0
    server.connected = True
    heartbeats = Heartbeats(client, Names())
    heartbeats.add(Check("nightly", grace_s=60, period_s=60, origin="cli"))
    heartbeats.add(Check("prom", grace_s=60, period_s=60, origin="cli",
                         watchdog=(label_matcher('alertname="Watchdog"'),)))
    alert = {"status": "firing", "labels": {"alertname": "Watchdog"}, "fingerprint": "wd"}
    watchdog = http.post("/adapters/alertmanager", json={"alerts": [alert]},
                         headers=auth(api_keys["cron"]))
    assert watchdog.status_code == 503, watchdog.json
    assert [name for name in client.keys("pdr:queue:*") if client.llen(name)] == []
    app.extensions["pd_relay_checks"].refresh()
    assert http.post("/ping/nightly", headers=auth(api_keys["cron"])).status_code == 200
    watchdog = http.post("/adapters/alertmanager", json={"alerts": [alert]},
                         headers=auth(api_keys["cron"]))
    assert watchdog.status_code == 202 and watchdog.json["pings"] == 1
    assert http.post("/ping/unknown", headers=auth(api_keys["cron"])).status_code == 404


def test_a_ping_after_remove_does_not_bring_the_check_back(pinged, fake, api_keys) -> None:
    """`pd-relay heartbeat remove` forgets a run-time check's state at once, but each
    ingress knows the check up to REFRESH_S longer. Before: a ping then wrote its state
    again (state, pings, due; a fail put a trigger in the outbox): the evaluator later
    took it down with no page (no such check), and the check added again under that
    name started down with an incident 'open' that was never paged (its first success
    sent the resolve of nothing). Now: a 404, nothing written."""
    names = Names()
    heartbeats = Heartbeats(fake, names)
    heartbeats.add(Check("job", grace_s=60, period_s=60, origin="cli"))
    http = create_app(pinged, client=fake).test_client()
    assert http.post("/ping/job", headers=auth(api_keys["cron"])).status_code == 200
    assert heartbeats.remove("job")
    reply = http.post("/ping/job/fail", headers=auth(api_keys["cron"]))
    assert reply.status_code == 404 and reply.is_json, reply.json
    assert not fake.exists(names.heartbeat("job"), names.heartbeat_pings("job"))
    assert fake.zscore(names.heartbeat_due, "job") is None
    assert fake.llen(names.heartbeat_pages) == 0


def test_a_watchdog_of_a_check_removed_a_moment_ago_pings_nothing(pinged, fake,
                                                                  api_keys) -> None:
    names = Names()
    heartbeats = Heartbeats(fake, names)
    heartbeats.add(Check("prom", grace_s=60, period_s=60, origin="cli",
                         watchdog=(label_matcher('alertname="Watchdog"'),)))
    http = create_app(pinged, client=fake).test_client()
    assert heartbeats.remove("prom")
    alert = {"status": "firing", "labels": {"alertname": "Watchdog"}, "fingerprint": "wd"}
    reply = http.post("/adapters/alertmanager", json={"alerts": [alert]},
                      headers=auth(api_keys["cron"]))
    assert reply.status_code == 202 and reply.json["pings"] == 0, reply.json
    assert not fake.exists(names.heartbeat("prom"))
