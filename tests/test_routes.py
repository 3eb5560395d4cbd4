"""Matchers, the routes file, who may send and where each event goes (through the Flask
app on fakeredis: the event store's Lua decides where follow-ups go)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from relay.app import create_app
from relay.auth import new_token
from relay.errors import ConfigError
from relay.keys import key_id
from relay.names import Names
from relay.routes.config import load
from relay.routes.matchers import parse
from relay.settings import Settings
from tests.conftest import make_key, trigger

NAMES = Names("pdr")


def event(severity: str = "critical", **details: object) -> dict[str, object]:
    return {"event_action": "trigger", "payload": {
        "summary": "s", "source": "db1", "severity": severity, "custom_details": details}}


@pytest.mark.parametrize(("text", "holds"), [
    ('severity="critical"', True), ('severity!="critical"', False),
    ('source=~"db[0-9]+"', True), ('source=~"db"', False),  # anchored, as in Alertmanager
    ('source!~"web.*"', True), ("severity>=error", True), ('severity>="critical"', True),
    ('custom_details.team="pay"', True), ('custom_details.db.role="primary"', True),
    ('custom_details.missing=""', True), ('component!="x"', True),
    ('sender="alertmanager"', True), ('adapter="events-v2"', False),
    (r'summary=~"\w"', True),
])
def test_matchers_in_alertmanagers_syntax(text: str, holds: bool) -> None:
    found = event(team="pay", db={"role": "primary"})
    assert parse(text).holds(found, {"sender": "alertmanager"}) is holds


def test_severity_at_least_orders_the_four_levels() -> None:
    matcher = parse('severity>="warning"')
    assert [matcher.holds(event(level), {}) for level in ("info", "warning", "error",
                                                          "critical", "")] == \
        [False, True, True, True, False]


@pytest.mark.parametrize(("text", "problem"), [
    ("severity", "is not a matcher"), ('nonsense="x"', "unknown field"),
    ('source>="db"', ">= takes severity"), ('source=~"("', "bad regular expression"),
])
def test_a_bad_matcher_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse(text)


def test_the_routes_file_names_every_problem_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "routes.yml"
    path.write_text("""
sources:
  - name: am
    api_keys: [hunter2]
routes:
  - name: pay
    match: ['severity>=bogus']
    keys: [payments, nope]
  - name: pay
    drop: true
    keys: [payments]
maintenance:
  - name: tonight
    start: 2026-11-25T22:00:00Z
    end: 2026-11-25T21:00:00Z
extra: 1
""")
    with pytest.raises(ConfigError) as caught:
        load(path, ["payments", "db"])
    problems = "\n".join(caught.value.problems)
    for expected in ("extra: unknown section", "sources[0].api_keys[0]: want 'sha256:'",
                     "routes[0].match[0]", "routes[0].keys[1]: no key named 'nope'",
                     "routes[1]: a route either drops", "maintenance[0].end: must be after",
                     "routes: the name 'pay' is used twice"):
        assert expected in problems, problems
    assert "hunter2" not in problems  # what looks like a key is never echoed


@pytest.fixture
def routed(tmp_path: Path, keys: tuple[str, ...], fake):
    """An app with named keys, a source per token and routes; returns (client, tokens)."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{keys[0]} payments\n{keys[1]} db\n{keys[2]} other\n")
    pay, pay_hash = new_token()
    ops, ops_hash = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
sources:
  - name: payments-team
    api_keys: ["{pay_hash}"]
    match: ['custom_details.service="payments"']
  - name: ops
    api_keys: ["{ops_hash}"]
routes:
  - name: noise
    match: ['severity="info"']
    drop: true
  - name: payments
    match: ['custom_details.service="payments"']
    keys: [payments]
  - name: databases
    match: ['source=~"db.*"']
    keys: [db]
maintenance:
  - name: over
    match: ['custom_details.service="batch"']
    start: 2020-01-01T00:00:00Z
    end: 2020-01-02T00:00:00Z
  - name: now
    match: ['custom_details.service="web"']
    start: 2020-01-01T00:00:00Z
    end: 2999-01-01T00:00:00Z
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys_file),
                                  "RELAY_ROUTES_FILE": str(routes)})
    app = create_app(settings, client=fake)
    return app.test_client(), {"pay": pay, "ops": ops}, settings


def queued_on(fake, key: str) -> int:
    return int(fake.llen(NAMES.queue(key_id(key))))


def test_no_api_key_and_no_routing_key_is_401_and_a_wrong_key_too(routed) -> None:
    client, tokens, _ = routed
    reply = client.post("/v2/enqueue", json=trigger())
    assert reply.status_code == 401 and reply.json["status"] == "unauthorized"
    assert "no API key" in reply.json["errors"][0]
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.post("/v2/enqueue", json=trigger(), headers={"X-API-Key": "pdr_guess"})
    assert wrong.status_code == 401 and "not one this relay knows" in wrong.json["errors"][0]
    # a resolve naming only a real incident's dedup_key is refused too
    assert client.post("/v2/enqueue", json={"event_action": "resolve",
                                            "dedup_key": "x"}).status_code == 401


def test_a_routing_key_authorises_its_event_as_pagerduty_does(routed, keys, fake) -> None:
    client, _, _ = routed
    reply = client.post("/v2/enqueue", json=trigger(routing_key=keys[2]))
    assert reply.status_code == 202 and queued_on(fake, keys[2]) == 1
    header = client.post("/v2/enqueue", json=trigger(), headers={"X-Routing-Key": keys[1]})
    assert header.status_code == 202 and queued_on(fake, keys[1]) == 1


def test_a_source_tied_to_a_service_may_not_send_for_another(routed, keys, fake) -> None:
    client, tokens, _ = routed
    bearer = {"Authorization": f"Bearer {tokens['pay']}"}
    ok = client.post("/v2/enqueue", json=event(service="payments"), headers=bearer)
    assert ok.status_code == 202 and queued_on(fake, keys[0]) == 1
    refused = client.post("/v2/enqueue", json=event(service="search"), headers=bearer)
    assert refused.status_code == 403 and refused.json["status"] == "forbidden"
    assert 'payments-team may not send it: custom_details.service="payments"' in \
        refused.json["errors"][0]


def test_routes_send_to_their_pools_drop_and_fall_back(routed, keys, fake) -> None:
    client, tokens, _ = routed
    ops = {"X-API-Key": tokens["ops"]}
    paid = client.post("/v2/enqueue", json=event(service="payments"), headers=ops)
    assert paid.status_code == 202
    db = dict(event(), payload={"summary": "s", "source": "db7", "severity": "error"})
    assert client.post("/v2/enqueue", json=db, headers=ops).status_code == 202
    assert (queued_on(fake, keys[0]), queued_on(fake, keys[1])) == (1, 1)
    dropped = client.post("/v2/enqueue", json=event("info", service="payments"), headers=ops)
    assert dropped.status_code == 202 and dropped.json["message"] == "Dropped by route noise"
    assert (queued_on(fake, keys[0]), queued_on(fake, keys[1])) == (1, 1)
    web = client.post("/v2/enqueue", json=event(service="web"), headers=ops)
    assert web.json["message"] == "Suppressed by maintenance window now"
    batch = client.post("/v2/enqueue", json=event(service="batch"), headers=ops)  # window over
    assert batch.json["message"] == "Event queued"


def test_follow_ups_of_a_dropped_trigger_are_held_with_it(routed, keys, fake) -> None:
    client, tokens, _ = routed
    ops = {"X-API-Key": tokens["ops"]}
    noisy = dict(event("info"), dedup_key="n1")
    assert client.post("/v2/enqueue", json=noisy, headers=ops).status_code == 202
    ack = client.post("/v2/enqueue", json={"event_action": "acknowledge", "dedup_key": "n1"},
                      headers=ops)
    assert ack.json["message"].startswith("Held with its trigger")
    resolve = client.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "n1"},
                          headers=ops)
    assert resolve.status_code == 202 and resolve.json["message"].startswith("Held")
    assert sum(queued_on(fake, k) for k in keys) == 0
    assert fake.zcard(NAMES.held) == 0  # the resolve forgot it
    # the same incident later triggered for real is sent, and its resolve follows it
    loud = dict(event("critical", service="payments"), dedup_key="n2")
    client.post("/v2/enqueue", json=dict(loud, payload=dict(loud["payload"], severity="info")),
                headers=ops)
    assert client.post("/v2/enqueue", json=loud, headers=ops).json["message"] == "Event queued"
    client.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "n2"}, headers=ops)
    assert queued_on(fake, keys[0]) == 2 and fake.zcard(NAMES.held) == 0


def test_a_resolve_of_an_incident_triggered_before_a_window_is_sent(routed, keys, fake,
                                                                     tmp_path) -> None:
    client, tokens, settings = routed
    ops = {"X-API-Key": tokens["ops"]}
    web = dict(event(service="web2"), dedup_key="w1")
    assert client.post("/v2/enqueue", json=web, headers=ops).json["message"] == "Event queued"
    routes = settings.routes_file.read_text().replace('service="web"', 'service="web2"')
    settings.routes_file.write_text(routes)
    app = create_app(settings, client=fake)  # the window now covers it
    later = app.test_client()
    retrigger = dict(web, dedup_key="w2")
    assert later.post("/v2/enqueue", json=retrigger, headers=ops).json["message"].startswith(
        "Suppressed")
    reply = later.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "w1"},
                       headers=ops)
    assert reply.json["message"] == "Event queued"
    assert sum(queued_on(fake, k) for k in keys) == 2  # w1's trigger and resolve


def test_a_reload_with_a_bad_file_keeps_the_routes_in_force(routed, keys, fake) -> None:
    client, tokens, settings = routed
    policy = client.application.extensions["pd_relay_policy"]
    good = settings.routes_file.read_text()
    settings.routes_file.write_text(good + "  - name: broken\n    keys: [nope]\n")
    assert policy.reload() is False
    ops = {"X-API-Key": tokens["ops"]}
    assert client.post("/v2/enqueue", json=event("info"), headers=ops).json["message"] == \
        "Dropped by route noise"
    settings.routes_file.write_text(good.replace('severity="info"', 'severity="warning"'))
    assert policy.reload() is True
    assert client.post("/v2/enqueue", json=event("info"), headers=ops).json["message"] == \
        "Event queued"


def test_anonymous_senders_only_when_the_operator_allows_them(routed, fake) -> None:
    client, _, settings = routed
    app = create_app(replace(settings, allow_anonymous=True), client=fake)
    assert app.test_client().post("/v2/enqueue", json=trigger()).status_code == 202
    assert make_key() not in str(settings)


def test_decisions_are_counted_per_route_and_source(routed, keys, fake) -> None:
    from relay.metrics import Metrics
    from relay.status import format_decisions
    from relay.tally import read

    client, tokens, settings = routed
    ops = {"X-API-Key": tokens["ops"]}
    client.post("/v2/enqueue", json=event(service="payments"), headers=ops)
    client.post("/v2/enqueue", json=event("info"), headers=ops)
    client.post("/v2/enqueue", json=event(service="web"), headers=ops)
    client.post("/v2/enqueue", json=event(service="search"),
                headers={"X-API-Key": tokens["pay"]})  # 403
    client.post("/v2/enqueue", json=event(), headers={"X-API-Key": "pdr_wrong"})  # 401
    client.post("/v2/enqueue", json=trigger(routing_key=keys[2]))
    client.application.extensions["pd_relay_tally"].flush()
    found = read(fake, NAMES.decisions)
    routes = {row["name"]: row for row in found["routes"]}
    assert routes["payments"]["accepted"] == 1 and routes["noise"]["dropped"] == 1
    assert routes["maintenance:now"]["suppressed"] == 1 and routes["routing-key"]["accepted"] == 1
    sources = {row["name"]: (row["accepted"], row["refused"]) for row in found["sources"]}
    assert sources == {"ops": (3, 0), "payments-team": (0, 1), "unknown-api-key": (0, 1),
                       "routing-key": (1, 0)}
    assert "noise" in format_decisions(found) and "payments-team" in format_decisions(found)
    text = Metrics(fake, NAMES, settings).render()[0].decode()
    assert 'pd_relay_route_events_total{outcome="dropped",route="noise"} 1.0' in text or \
        'pd_relay_route_events_total{route="noise",outcome="dropped"} 1.0' in text


def test_maintenance_windows_added_at_run_time(routed, keys, fake) -> None:
    import time

    from relay.routes.windows import Windows, when

    client, tokens, _ = routed
    now = time.time()
    windows = Windows(fake, NAMES.maintenance, clock=lambda: now)
    with pytest.raises(ValueError, match="not a matcher"):
        windows.add("bad", ["nope"], now, now + 60)
    # (started a second ago: the ingress dates an event in whole milliseconds, so an
    # event within a millisecond of `now` could fall just before a window starting then)
    window_id = windows.add("db-night", ['source=~"db.*"'], when("now", now) - 1,
                            when("2h", now), "disk swap")
    assert when("30m", 0) == 1800 and when("2026-11-25T22:00:00Z", 0) == 1795644000
    policy = client.application.extensions["pd_relay_policy"]
    policy.set_windows(windows.active())
    ops = {"X-API-Key": tokens["ops"]}
    db = dict(event(), payload={"summary": "s", "source": "db7", "severity": "error"})
    assert client.post("/v2/enqueue", json=db, headers=ops).json["message"] == \
        "Suppressed by maintenance window db-night"
    assert windows.expire(window_id) and not windows.expire("nope")
    later = Windows(fake, NAMES.maintenance, clock=lambda: now + 1)
    policy.set_windows(later.active())
    assert client.post("/v2/enqueue", json=db, headers=ops).json["message"] == "Event queued"
    assert [w["name"] for w in later.all()] == ["db-night"]  # kept a day for `list`
    assert Windows(fake, NAMES.maintenance, clock=lambda: now + 90_000).all() == []
