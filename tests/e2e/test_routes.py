"""End to end: who may send and where events go, with real ingress, worker, Redis and
PagerDuty simulator processes; the routes file reloaded on SIGHUP, without a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import requests

from relay.auth import new_token
from relay.stack.processes import wait_until
from tests.conftest import trigger


def alert(dedup_key: str, service: str, severity: str = "critical") -> dict[str, object]:
    return trigger(f"{service} is down", dedup_key=dedup_key,
                   payload={"summary": f"{service} down", "source": f"{service}-1",
                            "severity": severity, "custom_details": {"service": service}})


def test_sources_routes_and_maintenance_with_a_reload(make_stack, tmp_path: Path) -> None:
    pay, pay_hash = new_token()
    ops, ops_hash = new_token()
    routes = tmp_path / "routes.yml"
    text = f"""
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
    keys: [key-1]
  - name: rest
    keys: [key-2, key-3]
"""
    routes.write_text(text)
    stack = make_stack(keys=3, RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(routes),
                       RELAY_ADMIN_ALLOW="127.0.0.1")  # may read /metrics
    stack.start_simulator()
    url = stack.start_ingress()
    for index in range(3):
        stack.start_worker(index)
    post = stack.session.post

    # refused: no key at all, a wrong API key, a source sending for another service
    bare = post(url + "/v2/enqueue", json=alert("x", "payments"), timeout=10)
    assert bare.status_code == 401 and "no API key" in bare.json()["errors"][0]
    wrong = post(url + "/v2/enqueue", json=alert("x", "payments"), timeout=10,
                 headers={"X-API-Key": "pdr_not-a-key"})
    assert wrong.status_code == 401
    other = post(url + "/v2/enqueue", json=alert("x", "search"), timeout=10,
                 headers={"Authorization": f"Bearer {pay}"})
    assert other.status_code == 403 and "payments-team" in other.json()["errors"][0]

    as_ops = {"X-API-Key": ops}
    sent = {"p1": "payments", "s1": "search", "s2": "web", "n1": "payments"}
    for dedup_key, service in sent.items():
        severity = "info" if dedup_key == "n1" else "critical"
        reply = post(url + "/v2/enqueue", json=alert(dedup_key, service, severity),
                     headers=as_ops, timeout=10)
        assert reply.status_code == 202, reply.text
    assert post(url + "/v2/enqueue", json=alert("p2", "payments"), timeout=10,
                headers={"X-API-Key": pay}).status_code == 202
    # a PagerDuty client that names the key is let in by it
    named = dict(alert("k1", "search"), routing_key=stack.keys[2])
    assert post(url + "/v2/enqueue", json=named, timeout=10).status_code == 202

    wait_until(lambda: len(stack.delivered()) == 5, 30, "five deliveries")
    key_of = {e["dedup_key"]: e["routing_key"] for e in stack.delivered()}
    assert key_of["p1"] == key_of["p2"] == stack.keys[0]
    assert key_of["s1"] in stack.keys[1:] and key_of["s2"] in stack.keys[1:]
    assert key_of["k1"] == stack.keys[2] and "n1" not in key_of  # n1 was dropped

    # a maintenance window, added by a reload: the web trigger is held, the resolve of
    # s2 (opened before the window) still goes out, on its trigger's key
    routes.write_text(text + """
maintenance:
  - name: web-deploy
    match: ['custom_details.service="web"']
    start: 2020-01-01T00:00:00Z
    end: 2999-01-01T00:00:00Z
""")
    ingress = next(p for p in stack.processes if p.name.startswith("ingress"))
    ingress.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded: 2 source(s), 3 route(s), 1 maintenance" in
               ingress.log.read_text(), 10, "the routes file to be reloaded")
    held = post(url + "/v2/enqueue", json=alert("w2", "web"), headers=as_ops, timeout=10)
    assert held.json()["message"] == "Suppressed by maintenance window web-deploy"
    resolve = {"event_action": "resolve", "dedup_key": "s2"}
    assert post(url + "/v2/enqueue", json=resolve, headers=as_ops, timeout=10).json()[
        "message"] == "Event queued"
    wait_until(lambda: len(stack.delivered()) == 6, 30, "the resolve")
    last = stack.delivered()[-1]
    assert (last["dedup_key"], last["routing_key"]) == ("s2", key_of["s2"])
    assert all(e["dedup_key"] != "w2" for e in stack.sim_get("events")["events"])

    # a bad file keeps the routes in force
    routes.write_text("routes: [{name: broken, keys: [nope]}]\n")
    ingress.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: "not reloaded" in ingress.log.read_text(), 10, "the refusal")
    again = post(url + "/v2/enqueue", json=alert("w3", "web"), headers=as_ops, timeout=10)
    assert again.json()["message"].startswith("Suppressed")
    assert requests.get(url + "/metrics", timeout=5).text.count("pd_relay_open_relay 0.0") == 1

    # a window added at run time, from the command line, then expired
    routes.write_text(text)
    added = stack.cli("maintenance", "add", "search-night", "--match",
                      'custom_details.service="search"', "--end", "1h", "--comment", "reindex")
    assert added.returncode == 0, added.stderr
    window_id = added.stdout.split()[2]
    wait_until(lambda: "in force: search-night" in ingress.log.read_text(), 15, "the window")
    night = post(url + "/v2/enqueue", json=alert("s9", "search"), headers=as_ops, timeout=10)
    assert night.json()["message"] == "Suppressed by maintenance window search-night"
    listed = stack.cli("maintenance", "list")
    assert "search-night  active" in listed.stdout
    seen = len(ingress.log.read_text())
    assert stack.cli("maintenance", "expire", window_id).returncode == 0
    wait_until(lambda: "in force: none" in ingress.log.read_text()[seen:], 15, "the expiry")
    morning = post(url + "/v2/enqueue", json=alert("s10", "search"), headers=as_ops, timeout=10)
    assert morning.json()["message"] == "Event queued"
    status = stack.cli("status", "--json")
    sources = {row["name"]: row for row in json.loads(status.stdout)["sources"]}
    assert sources["payments-team"]["refused"] == 1 and sources["ops"]["accepted"] >= 5
