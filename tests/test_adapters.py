"""Adapters: Alertmanager's and Grafana's webhooks and platform events, from payloads in
each tool's own shape, through the app (validation, authorisation, routes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from relay.adapters import alertmanager, grafana, platform
from relay.app import create_app
from relay.auth import new_token
from relay.errors import InvalidEvent
from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from relay.severity import SeverityMap, parse_map
from relay.store import Record

NAMES = Names("pdr")
# As Alertmanager 0.25 sends it (webhook version 4), one alert firing, one resolved
ALERTMANAGER = {
    "receiver": "pd-relay", "status": "firing", "version": "4", "truncatedAlerts": 0,
    "groupKey": '{}:{alertname="HighLatency"}',
    "groupLabels": {"alertname": "HighLatency"},
    "commonLabels": {"alertname": "HighLatency", "job": "api"},
    "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093",
    "alerts": [
        {"status": "firing",
         "labels": {"alertname": "HighLatency", "instance": "api-1:9100", "job": "api",
                    "severity": "page", "service": "payments", "cluster": "eu-1"},
         "annotations": {"summary": "p99 latency above 2s on api-1",
                         "runbook_url": "https://runbooks.example/latency"},
         "startsAt": "2026-11-25T00:58:43.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency",
         "fingerprint": "1a2b3c4d5e6f7a8b"},
        {"status": "resolved",
         "labels": {"alertname": "HighLatency", "instance": "api-2:9100", "job": "api"},
         "annotations": {}, "startsAt": "2026-11-25T00:50:00Z",
         "endsAt": "2026-11-25T00:59:00Z", "generatorURL": "", "fingerprint": "99aa88bb"},
    ],
}
# As Grafana 10's webhook contact point sends it
GRAFANA = {
    "receiver": "pd-relay", "status": "firing", "orgId": 1, "version": "1",
    "groupKey": "{}:{alertname=\"DiskFull\"}", "truncatedAlerts": 0,
    "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
    "externalURL": "http://grafana.example:3000/", "title": "[FIRING:1] DiskFull",
    "state": "alerting", "message": "**Firing** ...",
    "alerts": [
        {"status": "firing",
         "labels": {"alertname": "DiskFull", "grafana_folder": "infra", "host": "db1",
                    "severity": "critical"},
         "annotations": {"description": "disk / on db1 is 97% full"},
         "startsAt": "2026-11-25T01:00:00+01:00", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://grafana.example:3000/alerting/grafana/abc/view",
         "fingerprint": "c0ffee", "silenceURL": "http://grafana.example:3000/alerting/silence",
         "dashboardURL": "http://grafana.example:3000/d/xyz",
         "panelURL": "http://grafana.example:3000/d/xyz?viewPanel=2",
         "values": {"B": 97.1}, "valueString": "[ var='B' labels={} value=97.1 ]"},
    ],
}


def test_alertmanager_alerts_become_a_trigger_and_a_resolve() -> None:
    trigger, resolve = alertmanager.convert(ALERTMANAGER, SeverityMap())
    assert resolve == {"event_action": "resolve", "dedup_key": "99aa88bb"}
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "1a2b3c4d5e6f7a8b"
    payload = trigger["payload"]
    assert payload["summary"] == "p99 latency above 2s on api-1"
    assert (payload["severity"], payload["source"], payload["component"], payload["group"],
            payload["class"]) == ("critical", "api-1:9100", "api", "eu-1", "HighLatency")
    assert payload["timestamp"] == "2026-11-25T00:58:43.123456Z"
    assert payload["custom_details"]["labels"]["service"] == "payments"
    assert trigger["links"] == [
        {"href": "http://prometheus.example:9090/graph?g0.expr=latency", "text": "Source"},
        {"href": "https://runbooks.example/latency", "text": "Runbook"}]
    assert (trigger["client"], trigger["client_url"]) == ("Alertmanager",
                                                          "http://alertmanager.example:9093")


def test_grafana_alerts_carry_dashboard_links_and_values() -> None:
    [event] = grafana.convert(GRAFANA, SeverityMap())
    assert event["payload"]["summary"] == "disk / on db1 is 97% full"
    assert event["payload"]["source"] == "db1" and event["payload"]["severity"] == "critical"
    assert [link["text"] for link in event["links"]] == ["Source", "Dashboard", "Panel",
                                                         "Silence"]
    assert event["payload"]["custom_details"]["values"] == {"B": 97.1}
    assert event["client"] == "Grafana"


def test_long_summaries_are_cut_and_missing_fingerprints_hashed_from_labels() -> None:
    body = copy.deepcopy(ALERTMANAGER)
    body["alerts"][0]["annotations"]["summary"] = "x" * 5000
    del body["alerts"][0]["fingerprint"]
    event = alertmanager.convert(body, SeverityMap())[0]
    assert len(event["payload"]["summary"]) == 1024
    again = alertmanager.convert(copy.deepcopy(body), SeverityMap())[0]
    assert event["dedup_key"] == again["dedup_key"] and len(event["dedup_key"]) == 16


def test_the_severity_mapping_is_settable() -> None:
    mapping = parse_map("page=warning, *=info")
    assert [mapping.level(w) for w in ("page", "CRITICAL", "bogus", None)] == \
        ["warning", "critical", "info", "info"]
    assert SeverityMap().level("bogus") == "error"
    with pytest.raises(ValueError, match="want word=level"):
        parse_map("page=urgent")


@pytest.mark.parametrize(("body", "problem"), [
    ({"alerts": "no"}, "not a Alertmanager webhook"), ({"alerts": []}, "empty"),
    ({"alerts": [{"status": "pending"}]}, "alerts[0].status"),
])
def test_a_body_that_is_not_a_webhook_is_refused_with_the_reason(body, problem) -> None:
    with pytest.raises(InvalidEvent) as caught:
        alertmanager.convert(body, SeverityMap())
    assert problem in caught.value.errors[0]


def test_platform_events_become_triggers_and_follow_ups() -> None:
    body = {"type": "deploy_failed", "level": "warning", "message": "deploy 42 failed",
            "service": "payments", "metadata": {"host": "ci-3", "build": 42}}
    [event] = platform.convert(body, SeverityMap())
    assert event["dedup_key"] == "payments:deploy_failed"
    assert event["payload"] == {
        "summary": "deploy 42 failed", "severity": "warning", "source": "ci-3",
        "component": "payments", "class": "deploy_failed",
        "custom_details": {"service": "payments", "type": "deploy_failed",
                           "metadata": {"host": "ci-3", "build": 42}}}
    resolve = platform.convert(dict(body, action="resolve"), SeverityMap())
    assert resolve == [{"event_action": "resolve", "dedup_key": "payments:deploy_failed"}]
    with pytest.raises(InvalidEvent) as caught:
        platform.convert({"level": "error", "metadata": []}, SeverityMap())
    assert len(caught.value.errors) == 4  # type, service, metadata, message


@pytest.fixture
def relay(tmp_path: Path, keys, fake):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{keys[0]} payments\n{keys[1]} infra\n{keys[2]} other\n")
    am, am_hash = new_token()
    pay, pay_hash = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
sources:
  - name: alertmanager
    api_keys: ["{am_hash}"]
  - name: payments-svc
    api_keys: ["{pay_hash}"]
    match: ['custom_details.service="payments"']
routes:
  - name: from-grafana
    match: ['adapter="grafana"']
    keys: [infra]
  - name: payments
    match: ['custom_details.labels.service="payments"']
    keys: [payments]
  - name: platform-payments
    match: ['custom_details.service="payments"', 'sender="payments-svc"']
    keys: [payments]
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys_file),
                                  "RELAY_ROUTES_FILE": str(routes)})
    return create_app(settings, client=fake).test_client(), am, pay


def queued(fake, key: str) -> list[Record]:
    return [Record.decode(raw) for raw in fake.lrange(NAMES.queue(key_id(key)), 0, -1)]


def test_an_alertmanager_webhook_is_stored_routed_and_resolved_in_order(relay, keys,
                                                                        fake) -> None:
    client, am, _ = relay
    headers = {"Authorization": f"Bearer {am}"}
    assert client.post("/adapters/alertmanager", json=ALERTMANAGER).status_code == 401
    reply = client.post("/adapters/alertmanager", json=ALERTMANAGER, headers=headers)
    assert reply.status_code == 202, reply.json
    assert reply.json["dedup_keys"] == ["1a2b3c4d5e6f7a8b", "99aa88bb"]
    resolved = copy.deepcopy(ALERTMANAGER)
    resolved["alerts"][0]["status"] = "resolved"
    client.post("/adapters/alertmanager", json=resolved, headers=headers)
    # the resolve follows its trigger (99aa88bb's trigger was never seen: it goes by hash)
    on_payments = [r.event["event_action"] for r in queued(fake, keys[0])
                   if r.event["dedup_key"] == "1a2b3c4d5e6f7a8b"]
    assert on_payments == ["trigger", "resolve"]
    grafana_reply = client.post("/adapters/grafana", json=GRAFANA, headers=headers)
    from_grafana = [r for r in queued(fake, keys[1]) if r.event.get("client") == "Grafana"]
    assert grafana_reply.status_code == 202 and len(from_grafana) == 1


def test_a_platform_event_is_authorised_by_its_source(relay, keys, fake) -> None:
    client, _, pay = relay
    event = {"type": "deploy_failed", "level": "error", "message": "deploy failed",
             "service": "payments", "metadata": {}}
    ok = client.post("/platform-event", json=event, headers={"x-api-key": pay})
    assert ok.status_code == 202 and queued(fake, keys[0])[0].event["payload"]["class"] == \
        "deploy_failed"
    other = client.post("/platform-event", json=dict(event, service="search"),
                        headers={"x-api-key": pay})
    assert other.status_code == 403
    bad = client.post("/platform-event", data=json.dumps([event]),
                      headers={"x-api-key": pay, "Content-Type": "application/json"})
    assert bad.status_code == 400 and "want one object" in bad.json["errors"][0]
    assert client.post("/adapters/nope", json={}, headers={"x-api-key": pay}).status_code == 404
