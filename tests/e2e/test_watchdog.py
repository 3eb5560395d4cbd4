"""End to end, the dead man's switch with a real Prometheus and a real Alertmanager
(Debian's, relay/stack/prometheus.py): Prometheus's always-firing Watchdog rule reaches
the relay through the Alertmanager's webhook receiver, each firing notification a ping of
the check whose ``watchdog`` matchers it matches. While Prometheus runs nothing is paged;
Prometheus stopped, the relay pages "Watchdog silent" once; Prometheus back, the incident
resolves. The Watchdog alert itself never becomes an incident."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from relay.auth import new_token
from relay.stack.processes import wait_until
from relay.stack.prometheus import MISSING, WatchdogPair, binaries

PERIOD_S, GRACE_S = 5, 5  # the Alertmanager repeats every 3 s (2 s on a 1 s tick)


def check_state(stack: Any, name: str) -> Any:
    """The check's state as the relay holds it (relay.heartbeats.store)."""
    from relay.heartbeats.catalog import Catalog
    from relay.heartbeats.store import Heartbeats
    from relay.names import Names
    from relay.routes.config import load

    routes = load(Path(stack.env["RELAY_ROUTES_FILE"]), ["key-1"])
    store = Heartbeats(stack.redis.client(), Names())
    check = Catalog(routes, store).get(name)
    return store.states([check])[0]


@pytest.mark.skipif(binaries() is None, reason=MISSING)
def test_a_silent_watchdog_pages_once_and_resolves_when_prometheus_is_back(
        make_stack, tmp_path: Path) -> None:
    token, digest = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
sources:
  - name: alertmanager
    api_keys: ["{digest}"]
heartbeats:
  - name: watchdog
    period: {PERIOD_S}s
    grace: {GRACE_S}s
    keys: [key-1]
    sources: [alertmanager]
    watchdog: ['alertname="Watchdog"']
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    relay = stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()  # it evaluates the checks
    pair = WatchdogPair(tmp_path / "prometheus", stack.logs, stack.env,
                        relay + "/adapters/alertmanager", token)
    try:
        pair.start()
        first = wait_until(lambda: (s := check_state(stack, "watchdog")).state == "up" and s,
                           60, "the Watchdog's first ping")
        # pings keep coming for longer than period + grace: nothing is paged
        wait_until(lambda: check_state(stack, "watchdog").last_ping_at
                   > first.last_ping_at + PERIOD_S + GRACE_S + 1, 60,
                   "Watchdog pings for longer than period + grace")
        assert check_state(stack, "watchdog").state == "up"
        assert stack.sim_get("events")["events"] == []  # the Watchdog is no incident

        stopping = time.time()  # its last send is after this
        pair.prometheus.stop()
        triggers = wait_until(lambda: paged(stack, "trigger"), 60, "the Watchdog-silent page")
        page = triggers[0]
        assert page["routing_key"] == stack.keys[0]
        assert page["summary"].startswith("Watchdog silent"), page
        assert page["custom_details"]["check"] == "watchdog", page
        # not before the deadline: the Alertmanager repeats the Watchdog (every 3 s) until
        # 4 s after Prometheus's last send, so its last ping is at most 3 s before the stop
        assert page["at"] - stopping >= PERIOD_S + GRACE_S - 3, page["at"] - stopping

        pair.prometheus.start()
        wait_until(lambda: paged(stack, "resolve"), 60, "the resolve once Prometheus is back")
        assert check_state(stack, "watchdog").state == "up"
    finally:
        pair.close()
    events = stack.sim_get("events")["events"]
    assert [(e["dedup_key"], e["event_action"], e["status"]) for e in events] == [
        ("heartbeat:watchdog", "trigger", 202), ("heartbeat:watchdog", "resolve", 202)], \
        events  # one page for the outage, then its resolve; the alert's own resolve unsent
    assert token not in stack.logs_text()


def paged(stack: Any, action: str) -> list[dict[str, Any]]:
    return [e for e in stack.delivered()
            if e["event_action"] == action and e["dedup_key"] == "heartbeat:watchdog"]
