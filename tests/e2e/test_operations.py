"""End to end: dead letters, bad input over real HTTP, the status command."""

from __future__ import annotations

import json
import time

import requests

from relay.stack.processes import wait_until
from tests.conftest import trigger


def test_a_pagerduty_400_lands_in_dead_letters_and_replays(make_stack) -> None:
    stack = make_stack(keys=1)
    stack.start_simulator()
    stack.sim_config(reject_rate=1.0)
    stack.start_ingress()
    stack.start_worker(0)
    assert stack.post([trigger(dedup_key="bad-1"), trigger(dedup_key="bad-2")]).status_code == 202
    wait_until(lambda: stack.status()[0]["dead_letters"] == 2, 15, "two dead letters")
    listing = stack.cli("dead-letters", "list", "--json")
    letters = json.loads(listing.stdout)["dead_letters"]
    assert [letter["status"] for letter in letters] == [400, 400]
    assert {letter["event"].split()[-1] for letter in letters} == {"bad-1", "bad-2"}
    shown = stack.cli("dead-letters", "show", letters[0]["id"])
    assert shown.returncode == 0 and "simulated rejection" in shown.stdout
    assert json.loads(shown.stdout)["event"]["dedup_key"] == "bad-1"
    table = stack.cli("dead-letters", "list").stdout
    assert "bad-1" in table and "HTTP 400" in table
    for output in (listing.stdout, shown.stdout, table, stack.cli("status").stdout):
        assert stack.keys[0] not in output

    stack.sim_config(reject_rate=0.0)
    replay = stack.cli("dead-letters", "replay", "--all")
    assert replay.returncode == 0 and replay.stdout.count("replayed") == 2
    wait_until(lambda: {e["dedup_key"] for e in stack.delivered()} == {"bad-1", "bad-2"},
               15, "the replayed events")
    row = stack.status()[0]
    assert row["dead_letters"] == 0 and row["delivered"] == 2
    assert stack.cli("dead-letters", "replay", letters[0]["id"]).returncode == 1


def test_bad_input_over_http_gets_json_errors_and_never_a_500(make_stack) -> None:
    stack = make_stack(keys=1)
    url = stack.start_ingress()
    post = requests.post
    cases = [
        (post(url + "/v2/enqueue", data="a=b", timeout=5,
              headers={"Content-Type": "application/x-www-form-urlencoded"}), 400),
        (post(url + "/v2/enqueue", data="{", headers={"Content-Type": "application/json"},
              timeout=5), 400),
        (post(url + "/v2/enqueue", json={}, timeout=5), 400),
        (post(url + "/v2/enqueue", json=trigger(routing_key="x" * 32), timeout=5), 400),
        (post(url + "/v2/enqueue", data=b"[" + b"1," * 300_000 + b"1]", timeout=5,
              headers={"Content-Type": "application/json"}), 413),
        (post(url + "/v2/change/enqueue", json={"payload": {}}, timeout=5), 400),
        (requests.get(url + "/v2/enqueue", timeout=5), 405),
        (requests.delete(url + "/", timeout=5), 405),
        (post(url + "/nowhere", json={}, timeout=5), 404),
    ]
    for reply, status in cases:
        assert reply.status_code == status, (reply.status_code, reply.text)
        assert reply.headers["Content-Type"].startswith("application/json")
        body = reply.json()
        assert body["status"] and body["message"] and body["errors"], body
    assert stack.status()[0]["queued"] == 0


def test_status_and_metrics_report_queues_and_workers(make_stack) -> None:
    stack = make_stack(keys=2, RELAY_LEASE_TTL_S="5", RELAY_CONNECT_TIMEOUT_S="1",
                       RELAY_ADMIN_ALLOW="127.0.0.1")  # may read /metrics
    url = stack.start_ingress()
    assert stack.post([trigger(routing_key=stack.keys[1]) for _ in range(3)]).status_code == 202
    rows = stack.status()
    assert [row["queued"] for row in rows] == [0, 3]
    assert rows[1]["oldest_age_seconds"] >= 0 and rows[1]["workers"] == 0
    table = stack.cli("status").stdout.splitlines()
    # the key table ends with its totals; the routes' and sources' counts may follow, once
    # the ingress has added its counts to Redis (every second)
    assert table[0].split()[:2] == ["KEY", "QUEUED"] and table[3].startswith("TOTAL")
    metrics = requests.get(url + "/metrics", timeout=5).text
    assert 'pd_relay_events_accepted_total{kind="alert"} 3.0' in metrics
    assert stack.keys[1] not in metrics
    # a killed worker stops counting once its heartbeat lapses (the 5 s lease TTL)
    worker = stack.start_worker(0)
    wait_until(lambda: stack.status()[0]["workers"] == 1, 15, "the worker's heartbeat")
    worker.kill()
    killed = time.monotonic()
    wait_until(lambda: stack.status()[0]["workers"] == 0, 10, "the heartbeat to lapse")
    assert time.monotonic() - killed <= 6


def test_a_bad_configuration_stops_start_up_naming_every_problem(make_stack) -> None:
    stack = make_stack(keys=1)
    stack.env["RELAY_RATE_PER_MIN"] = "fast"
    stack.env["RELAY_PD_URL"] = "ftp://example"
    result = stack.cli("ingress")
    assert result.returncode == 2
    assert "RELAY_RATE_PER_MIN" in result.stderr and "RELAY_PD_URL" in result.stderr
    del stack.env["RELAY_RATE_PER_MIN"], stack.env["RELAY_PD_URL"]
    result = stack.cli("worker", "--key-index", "5")
    assert result.returncode == 2 and "out of range" in result.stderr


def test_send_test_reports_delivery_and_failure(make_stack) -> None:
    stack = make_stack(keys=2)
    stack.start_simulator()
    url = stack.start_ingress()
    stack.start_worker(0)
    stack.start_worker(1)
    result = stack.cli("send-test", "--url", url, "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trigger: delivered" in result.stdout and "resolve: delivered" in result.stdout
    arrived = [(e["event_action"], e["dedup_key"]) for e in stack.delivered()]
    assert [action for action, _ in arrived] == ["trigger", "resolve"]
    assert arrived[0][1].startswith("pd-relay-send-test-")

    stack.sim_config(reject_rate=1.0)
    result = stack.cli("send-test", "--url", url, "--key-index", "1", "--timeout", "20")
    assert result.returncode == 1 and "dead-lettered" in result.stdout
    assert "test FAILED" in result.stdout
