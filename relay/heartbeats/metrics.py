"""The checks' figures for /metrics, read at scrape time: per check whether it is up and
how long since its last ping, how many checks are in each state (a bounded label set:
``model.STATES``), and how long since the evaluator's last round (no evaluator, no page
for a silent check: the rule PdRelayHeartbeatsNotEvaluated watches it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from relay.heartbeats.model import STATES, Check
from relay.heartbeats.report import StateReader, read, redis_now
from relay.names import Names


def collect(client: Any, names: Names, reader: StateReader, checks: Sequence[Check]
            ) -> Iterator[Metric]:
    found = read(client, reader, checks)
    up = GaugeMetricFamily("pd_relay_heartbeat_up", "0 while the check is down (its incident "
                           "is open), else 1 (new, up, late, started, paused)", labels=["check"])
    age = GaugeMetricFamily("pd_relay_heartbeat_last_ping_age_seconds", "Seconds since the "
                            "check's last ping (none: never pinged)", labels=["check"])
    outages = CounterMetricFamily("pd_relay_heartbeat_outages", "Times the check went down",
                                  labels=["check"])
    for row in found:
        up.add_metric([row["name"]], 0.0 if row["state"] == "down" else 1.0)
        if row["last_ping_age_seconds"] is not None:
            age.add_metric([row["name"]], float(row["last_ping_age_seconds"]))
        outages.add_metric([row["name"]], float(row["outages"]))
    yield up
    yield age
    yield outages
    counted = Counter(row["state"] for row in found)
    states = GaugeMetricFamily("pd_relay_heartbeats", "Checks in each state", labels=["state"])
    for state in STATES:
        states.add_metric([state], float(counted.get(state, 0)))
    yield states
    if checks:  # no checks, nothing to evaluate: no figure (and no alert)
        stamped = client.get(names.heartbeat_clock)
        since = (max(0.0, redis_now(client) - int(stamped) / 1000) if stamped
                 else float("inf"))
        yield GaugeMetricFamily("pd_relay_heartbeat_evaluated_age_seconds", "Seconds since "
                                "the checks were last evaluated (a channel worker evaluates "
                                "them every second or so; +Inf: never)", value=since)
