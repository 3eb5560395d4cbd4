"""The ready-made monitoring in monitoring/: Prometheus's alerting rules (checked and
unit-tested by promtool, from Debian's prometheus package) and the Grafana dashboard
(its queries parse, and name only metrics the code exports)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from relay.names import Names
from relay.scripts import LATENCY_BOUNDS_MS
from tests.conftest import UNIX

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "monitoring" / "prometheus" / "pd-relay-rules.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "pd-relay-dashboard.json"
METRIC = re.compile(r"\bpd_relay_[a-z_]+\b")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus "
                                    "package) is not installed; scripts/test installs it as root")


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


@needs_promtool
def test_the_alerting_rules_check_and_their_unit_tests_pass() -> None:
    for args in (["check", "rules", RULES.name], ["test", "rules", "pd-relay-rules.test.yml"]):
        done = subprocess.run([str(PROMTOOL), *args], cwd=RULES.parent, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


@needs_promtool
def test_every_dashboard_query_is_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"pd_relay_dashboard_query_{n}", "expr": expr}
        for n, expr in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def exported(client, fake, settings) -> set[str]:
    """The metric names /metrics exports once every family has a sample."""
    names = Names(settings.prefix)
    client.post("/v2/enqueue", json={"event_action": "trigger", "payload": {
        "summary": "s", "source": "db1", "severity": "critical"}})
    client.post("/v2/enqueue", json={"event_action": "nonsense"})  # a refusal
    fake.hset(names.channel_stats, mapping={"chat:sent": 1, "chat:failed": 1, "chat:held": 1,
                                            "skipped": 1})
    fake.hset(names.alarms, "no-worker:db", "{}")
    fake.hset(names.decisions, mapping={"route|default|accepted": 1,
                                        "source|anonymous|accepted": 1})
    from relay.keys import key_id

    fake.hset(names.latency(key_id(settings.routing_keys[0])),
              mapping={LATENCY_BOUNDS_MS[0]: 1, "sum_ms": 5})
    from relay.heartbeats.model import Check
    from relay.heartbeats.store import Heartbeats

    beat = Check("cron", grace_s=60, period_s=300, keys=(), origin="cli")
    Heartbeats(fake, names).add(beat)
    Heartbeats(fake, names).ping(beat, "success")  # every heartbeat family has a sample
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def recorded(fake, settings) -> set[str]:
    """The history record's metric names, exported with RELAY_HISTORY_DSN once an
    exporter ran."""
    from dataclasses import replace

    from relay.app import create_app

    names = Names(settings.prefix)
    fake.xadd(names.history, {"s": "attempt", "k": "1", "x": "{}"})
    fake.xgroup_create(names.history, names.history_group, id="0")
    dsn = "postgresql://relay:pw@127.0.0.1:5432/pd_relay"
    app = create_app(replace(settings, history_dsn=dsn), fake).test_client()
    text = app.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line.startswith("pd_relay_history")}


def test_rules_and_dashboard_name_only_metrics_the_relay_exports(client, fake,
                                                                 settings) -> None:
    found = exported(client, fake, settings) | recorded(fake, settings)
    assert {"pd_relay_history_export_lag_seconds", "pd_relay_history_lost_total",
            "pd_relay_history_exported_total"} <= found
    assert {"pd_relay_queued", "pd_relay_channel_sent_total", "pd_relay_alarm_open",
            "pd_relay_route_events_total", "pd_relay_heartbeat_up",
            "pd_relay_heartbeat_evaluated_age_seconds"} <= found, sorted(found)
    for source, exprs in (("rules", rule_exprs()), ("dashboard", dashboard_exprs())):
        used = {name for expr in exprs for name in METRIC.findall(expr)}
        assert used and used <= found, (source, sorted(used - found))


def test_the_dashboard_is_importable_as_grafana_expects() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS" and dashboard["uid"] == "pd-relay"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}"


@needs_promtool
def test_the_scrape_example_sends_a_token_from_a_file(tmp_path: Path) -> None:
    example = (RULES.parent / "scrape-example.yml").read_text()
    config = yaml.safe_load(example)
    [job] = config["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/etc/prometheus/pd-relay-token"
    token = tmp_path / "token"
    token.write_text("pdr_example\n")
    shutil.copy(RULES, tmp_path / RULES.name)
    (tmp_path / "prometheus.yml").write_text(
        example.replace("/etc/prometheus/pd-relay-token", str(token)))
    checked = subprocess.run([str(PROMTOOL), "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
