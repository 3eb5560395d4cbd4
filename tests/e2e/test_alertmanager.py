"""End to end with a real Alertmanager (Debian's prometheus-alertmanager): its PagerDuty
receiver pointed at the relay as it is, and its webhook receiver at the Alertmanager
adapter with an API key; each alert's trigger and resolve reach PagerDuty in order, on
one key."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from relay.auth import new_token
from relay.stack.processes import Process, free_port, wait_until

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager is not installed "
                    "(scripts/test installs it with apt-get when run as root)")
def test_alertmanagers_pagerduty_and_webhook_receivers_deliver_through_the_relay(
        make_stack, tmp_path: Path) -> None:
    token, digest = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"sources:\n  - name: alertmanager\n    api_keys: [\"{digest}\"]\n")
    stack = make_stack(keys=2, RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    relay = stack.start_ingress()
    for index in range(2):
        stack.start_worker(index)

    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "route": {"receiver": "relay", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{
            "name": "relay",
            "pagerduty_configs": [{"routing_key": stack.keys[0], "url": relay + "/v2/enqueue",
                                   "send_resolved": True, "severity": "critical"}],
            "webhook_configs": [{"url": relay + "/adapters/alertmanager",
                                 "send_resolved": True,
                                 "http_config": {"authorization": {"credentials": token}}}],
        }],
    }))
    argv = [str(BINARY), f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    alertmanager = Process("alertmanager", argv, dict(stack.env), stack.logs)
    stack.processes.append(alertmanager)
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(api + "/-/ready", timeout=1).ok, 30, "Alertmanager")

    def alert(ends: datetime) -> list[dict[str, object]]:
        return [{"labels": {"alertname": "DiskFull", "instance": "db1:9100", "job": "node",
                            "severity": "critical"},
                 "annotations": {"summary": "disk / on db1 is 97% full"},
                 "startsAt": started.isoformat(), "endsAt": ends.isoformat(),
                 "generatorURL": "http://prometheus.example/graph"}]

    started = datetime.now(UTC)
    requests.post(api + "/api/v2/alerts", json=alert(started + timedelta(hours=1)),
                  timeout=5).raise_for_status()
    wait_until(lambda: len(stack.delivered()) >= 2, 60, "both receivers' triggers")
    requests.post(api + "/api/v2/alerts", json=alert(datetime.now(UTC)),
                  timeout=5).raise_for_status()
    wait_until(lambda: len(stack.delivered()) >= 4, 60, "both receivers' resolves")

    events = stack.sim_get("events")["events"]
    refused = [e for e in events if e["status"] != 202]
    assert not refused, refused  # PagerDuty's stand-in took every event as it came
    by_incident: dict[str, list[tuple[str, str]]] = {}
    for event in stack.delivered():
        by_incident.setdefault(event["dedup_key"], []).append(
            (event["event_action"], event["routing_key"]))
    assert len(by_incident) == 2, by_incident  # the PagerDuty receiver's and the webhook's
    for dedup_key, seen in by_incident.items():
        actions = [action for action, _ in seen]
        assert actions[0] == "trigger" and actions[-1] == "resolve", (dedup_key, seen)
        assert len({key for _, key in seen}) == 1, f"{dedup_key} changed keys: {seen}"
    pagerduty_receiver = [seen for seen in by_incident.values() if seen[0][1] == stack.keys[0]]
    assert pagerduty_receiver, "the PagerDuty receiver's events went to its routing key"
    log = stack.logs_text()
    assert "accepted trigger" in log and token not in log
