"""Prometheus metrics of an ingress node: its own counters, and every key's queue and
delivery figures read from Redis at scrape time (so any node reports the workers')."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from relay.channels.metrics import collect as channel_figures
from relay.heartbeats.metrics import collect as heartbeat_figures
from relay.heartbeats.report import Report
from relay.history.pg import report as record
from relay.keys import key_id
from relay.names import Names
from relay.scripts import LATENCY_BOUNDS_MS, LATENCY_BUCKETS_S
from relay.settings import Settings
from relay.status import COUNTERS, read_shed, read_status
from relay.tally import OUTCOMES
from relay.tally import read as read_decisions

log = logging.getLogger(__name__)

FIGURES = {
    "queued": "Events waiting in the key's queue",
    "queued_bytes": "Bytes of the key's queued and in-flight events (RELAY_QUEUE_MAX_MB caps them)",
    "in_flight": "Events being delivered",
    "open_incidents": "Incidents remembered on the key, so their follow-ups go to it",
    "accepted": "Events queued by all nodes",
    "delivered": "Events PagerDuty accepted",
    "retried": "Delivery attempts that will be retried",
    "throttled": "Delivery attempts PagerDuty answered with 429",
    "dead": "Events PagerDuty rejected for good",
    "purged": "Queued events removed by pd-relay queue purge",
    "dead_letters": "Dead letters now stored",
    "oldest_age_seconds": "Age of the oldest queued event",
    "oldest_critical_age_seconds": "Age of the oldest critical event waiting (storm mode)",
    "coalesced": "Waiting repeated triggers merged into a newer one (storm mode)",
    "aged": "Events sent before more urgent ones, having waited RELAY_STORM_AGE_S (storm mode)",
    "delivered_last_min": "Events delivered in the last 60 seconds",
    "workers": "Workers whose last heartbeat is within their lease TTL",
    "rate_limit": "Sends allowed per rate window now (lower while PagerDuty throttles)",
    "key_blocked": "1 while the key is blocked by a misconfiguration (see status), else 0",
}


class Metrics:
    def __init__(self, client: redis.Redis, names: Names, settings: Settings,
                 heartbeats: Report | None = None) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "pd_relay_events_accepted", "Events queued by this node", ["kind"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "pd_relay_requests_refused", "Requests this node refused", ["reason"],
            registry=self.registry,
        )
        open_relay = Gauge("pd_relay_open_relay", "1 when anyone who can reach the relay may "
                           "send events (RELAY_ALLOW_ANONYMOUS)", registry=self.registry)
        open_relay.set(int(settings.allow_anonymous))
        self.registry.register(_QueueCollector(client, names, settings))
        if heartbeats is not None:
            self.registry.register(_HeartbeatCollector(names, heartbeats))
        if settings.history_dsn:
            self.registry.register(_RecordCollector(client, names, settings))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _QueueCollector(Collector):
    def __init__(self, client: redis.Redis, names: Names, settings: Settings) -> None:
        self.client = client
        self.names = names
        self.settings = settings
        self.keys = settings.routing_keys

    def collect(self) -> Iterator[Metric]:
        try:
            decisions = read_decisions(self.client, self.names.decisions)
            rows = read_status(self.client, self.names, self.settings)
            with self.client.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.hgetall(self.names.latency(key_id(key)))
                histograms = pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics: cannot read Redis: %s", exc)
            rows, histograms, decisions = [], [], {"routes": [], "sources": []}
        try:
            channels = list(channel_figures(self.client, self.names))
        except redis.RedisError:
            channels = []
        yield from channels
        for figure, text in FIGURES.items():
            kind = CounterMetricFamily if figure in COUNTERS[:-1] else GaugeMetricFamily
            family = kind(f"pd_relay_{figure}", text, labels=["key"])
            for row in rows:
                family.add_metric([str(row["name"])], float(row[figure] or 0))
            yield family
        lanes = GaugeMetricFamily("pd_relay_queued_by_severity", "Events sorted into each "
                                  "severity's lane (storm mode)", labels=["key", "severity"])
        for row in rows:
            for severity, count in row["queued_by_severity"].items():
                lanes.add_metric([str(row["name"]), severity], float(count))
        yield lanes
        latency = HistogramMetricFamily(
            "pd_relay_delivery_latency_seconds", "From 202 at ingress to PagerDuty's 2xx",
            labels=["key"],
        )
        for key, counts in zip(self.keys, histograms, strict=False):
            buckets, total = [], 0
            for bound, field in zip(LATENCY_BUCKETS_S, LATENCY_BOUNDS_MS, strict=True):
                total += int(counts.get(field, 0))
                buckets.append((str(float(bound)), float(total)))
            buckets.append(("+Inf", float(total + int(counts.get("+Inf", 0)))))
            sum_s = int(counts.get("sum_ms", 0)) / 1000
            latency.add_metric([self.settings.name_of(key)], buckets, sum_s)
        yield latency
        try:
            shed = read_shed(self.client, self.names)
        except redis.RedisError:
            shed = {}
        gone = CounterMetricFamily("pd_relay_shed", "What the relay let go to keep room for "
                                   "pages, by kind (incidents, held, history, notices)",
                                   labels=["kind"])
        for what, count in shed.items():
            gone.add_metric([what], float(count))
        yield gone
        for section, label in (("routes", "route"), ("sources", "source")):
            family = CounterMetricFamily(
                f"pd_relay_{label}_events", f"Events by {label} and outcome, every node",
                labels=[label, "outcome"])
            for row in decisions.get(section, []):
                for outcome in OUTCOMES:
                    family.add_metric([row["name"], outcome], float(row[outcome]))
            yield family


class _HeartbeatCollector(Collector):
    """The heartbeat checks' figures (relay/heartbeats/metrics.py); none while Redis does
    not answer (Prometheus then sees them missing, not zero)."""

    def __init__(self, names: Names, report: Report) -> None:
        self.names = names
        self.report = report

    def collect(self) -> Iterator[Metric]:
        try:
            report = self.report
            figures = list(heartbeat_figures(report.client, self.names, report.reader,
                                             report.checks()))
        except redis.RedisError as exc:
            log.warning("metrics: cannot read the heartbeat checks from Redis: %s", exc)
            figures = []
        yield from figures


class _RecordCollector(Collector):
    """The record in PostgreSQL, as Redis knows it (``relay.history.pg.report``): the
    export's lag (no exporter ever ran: the oldest entry's age), entries exported and
    lost from it."""

    def __init__(self, client: redis.Redis, names: Names, settings: Settings) -> None:
        self.client = client
        self.names = names
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            figures = record.read(self.client, self.names, self.settings,
                                  int(time.time() * 1000))
        except redis.RedisError as exc:
            log.warning("metrics: cannot read the history's export from Redis: %s", exc)
            return
        if figures is None:
            return
        if figures.lag_s is not None:
            lag = GaugeMetricFamily("pd_relay_history_export_lag_seconds", "Age of the oldest "
                                    "history entry not yet committed to PostgreSQL")
            lag.add_metric([], figures.lag_s)
            yield lag
        yield CounterMetricFamily("pd_relay_history_exported", "History entries written to "
                                  "PostgreSQL", value=figures.exported)
        yield CounterMetricFamily("pd_relay_history_lost", "History entries lost from the "
                                  "record: the stream's caps trimmed them before export",
                                  value=figures.lost)
