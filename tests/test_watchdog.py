"""The Watchdog (issue 28): an Alertmanager or Grafana alert matching a check's
``watchdog`` matchers is that check's ping, never an event; the rest of the webhook goes
on as before."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.auth import digest, new_token
from relay.heartbeats.config import label_matcher
from relay.heartbeats.model import Check
from relay.settings import Settings
from tests.pingfakes import FakeChecks, FakePings
from tests.test_adapters import ALERTMANAGER, GRAFANA

CHECKS = FakeChecks(
    Check("prometheus", grace_s=120, period_s=60, sources=("prom",),
          watchdog=(label_matcher('alertname="Watchdog"'), label_matcher('severity=~"no.*"'))),
    Check("grafana", grace_s=120, period_s=60,
          watchdog=(label_matcher('alertname="DeadMansSwitch"'),)),
    Check("plain", grace_s=120, period_s=60),
)
WATCHDOG = {"status": "firing", "labels": {"alertname": "Watchdog", "severity": "none"},
            "annotations": {"summary": "always firing"}, "startsAt": "2026-12-05T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "wd01"}


@pytest.fixture
def api_keys() -> dict[str, str]:
    return {"prom": new_token()[0], "other": new_token()[0]}


@pytest.fixture
def store() -> FakePings:
    return FakePings()


@pytest.fixture
def http(settings: Settings, tmp_path: Path, api_keys: dict[str, str],
         fake: fakeredis.FakeRedis, store: FakePings) -> FlaskClient:
    path = tmp_path / "routes.yml"
    path.write_text("sources:\n" + "".join(
        f"  - name: {name}\n    api_keys: [\"{digest(key)}\"]\n" for name, key in api_keys.items()))
    routed = replace(settings, routes_file=path, allow_anonymous=False)
    return create_app(routed, client=fake, checks=CHECKS, pings=store).test_client()


def queued(fake: fakeredis.FakeRedis) -> list[str]:
    return [raw for name in fake.keys("pdr:queue:*") for raw in fake.lrange(name, 0, -1)]


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(ALERTMANAGER)
    body["alerts"] = [copy.deepcopy(alert) for alert in alerts]
    return body


def send(http: FlaskClient, key: str, body: dict[str, Any], adapter: str = "alertmanager"):
    return http.post(f"/adapters/{adapter}", json=body,
                     headers={"Authorization": f"Bearer {key}"})


def test_a_webhook_of_only_the_watchdog_is_a_ping_and_no_event(http, fake, store,
                                                               api_keys) -> None:
    reply = send(http, api_keys["prom"], webhook(WATCHDOG))
    assert reply.status_code == 202, reply.json
    assert reply.json["status"] == "success" and reply.json["pings"] == 1
    assert queued(fake) == []
    assert [(c["name"], c["signal"], c["by"]) for c in store.calls] == [
        ("prometheus", "success", "alertmanager:prom")]


def test_the_rest_of_the_webhook_goes_on_as_before(http, fake, store, api_keys) -> None:
    body = webhook(WATCHDOG, *ALERTMANAGER["alerts"])
    reply = send(http, api_keys["prom"], body)
    assert reply.status_code == 202 and reply.json["pings"] == 1
    assert reply.json["dedup_keys"] == ["1a2b3c4d5e6f7a8b", "99aa88bb"]
    assert len(queued(fake)) == 2 and "wd01" not in "".join(queued(fake))


def test_a_webhook_without_watchdogs_answers_as_before(http, fake, store, api_keys) -> None:
    reply = send(http, api_keys["prom"], webhook(*ALERTMANAGER["alerts"]))
    assert reply.status_code == 202 and "pings" not in reply.json
    assert store.calls == [] and len(queued(fake)) == 2


def test_a_resolved_watchdog_is_neither_a_ping_nor_an_event(http, fake, store,
                                                            api_keys) -> None:
    reply = send(http, api_keys["prom"], webhook(dict(WATCHDOG, status="resolved")))
    assert reply.status_code == 202 and reply.json["pings"] == 0
    assert store.calls == [] and queued(fake) == []


def test_a_sender_the_check_does_not_list_pings_nothing_and_its_alerts_go_on(
        http, fake, store, api_keys) -> None:
    """A sender the check does not list cannot ping (silence) it, and the other alerts of
    its webhook are not lost with its Watchdog: before, the whole webhook was a 403, which
    Alertmanager does not retry (kube-prometheus groups Watchdog with its namespace's
    alerts), so those alerts never paged. Its Watchdog-looking alert is, for this sender,
    an alert like any (as before issue 28)."""
    reply = send(http, api_keys["other"], webhook(WATCHDOG, *ALERTMANAGER["alerts"]))
    assert reply.status_code == 202, reply.json
    assert "pings" not in reply.json and store.calls == []
    assert reply.json["dedup_keys"] == ["wd01", "1a2b3c4d5e6f7a8b", "99aa88bb"]
    assert len(queued(fake)) == 3


def test_a_refused_rest_leaves_no_ping(http, fake, store, api_keys) -> None:
    broken = dict(ALERTMANAGER["alerts"][0], status="pending")
    reply = send(http, api_keys["prom"], webhook(WATCHDOG, broken))
    assert reply.status_code == 400 and "alerts[0].status" in reply.json["errors"][0]
    assert store.calls == [] and queued(fake) == []


def test_grafana_watchdogs_are_pings_too(http, fake, store, api_keys) -> None:
    body = copy.deepcopy(GRAFANA)
    body["alerts"].append(dict(copy.deepcopy(GRAFANA["alerts"][0]), fingerprint="dms",
                               labels={"alertname": "DeadMansSwitch"}))
    reply = send(http, api_keys["other"], body, "grafana")
    assert reply.status_code == 202 and reply.json["pings"] == 1
    assert [c["name"] for c in store.calls] == ["grafana"]
    assert len(queued(fake)) == 1 and "dms" not in queued(fake)[0]


def test_redis_down_at_the_ping_is_a_503(http, fake, store, api_keys) -> None:
    store.down = True
    reply = send(http, api_keys["prom"], webhook(WATCHDOG))
    assert reply.status_code == 503 and reply.headers["Retry-After"]
