"""The channels' and the relay's own alarms' figures for /metrics, read from Redis at
scrape time (no RQ on the ingress: what RQ's registries hold, `pd-relay channels status`
reads)."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from relay.channels.gather import open_gatherings
from relay.names import Names


def collect(client: redis.Redis, names: Names) -> Iterator[Metric]:
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(names.channel_stats)
        pipe.llen(names.outbox)
        pipe.hkeys(names.alarms)
        stats, waiting, alarms = pipe.execute()
    yield from per_channel(stats, (
        ("sent", "Messages a channel took"),
        ("failed", "Messages a channel refused, or that ran out of retries"),
        ("held", "Messages (notices or digests) held while the channel's breaker was open, "
         "to go out as a digest")))
    yield from breakers(client, names, sorted({field.rpartition(":")[0] for field in stats
                                               if field.rpartition(":")[0]}))
    yield GaugeMetricFamily("pd_relay_outbox_notices", "Notices waiting to become channel "
                            "jobs (the channel worker makes them)", value=float(waiting))
    yield CounterMetricFamily("pd_relay_outbox_skipped", "Notices skipped while the outbox "
                              "was full (RELAY_OUTBOX_MAX_MB): a channel missed the event",
                              value=float(stats.get("skipped", 0)))
    yield GaugeMetricFamily("pd_relay_channel_jobs", "Channel jobs waiting in RQ (queued or "
                            "scheduled for a retry), as the dispatcher last counted them",
                            value=float(stats.get("dispatch_backlog", 0)))
    yield CounterMetricFamily("pd_relay_outbox_held", "Rounds the dispatcher made no jobs "
                              "because RQ held its bound of channel jobs (notices wait in the "
                              "outbox)", value=float(stats.get("dispatch_held", 0)))
    yield CounterMetricFamily("pd_relay_channel_failed_forgotten", "Failed channel messages "
                              "deleted, oldest first, past their bound (FAILED_MAX)",
                              value=float(stats.get("failed_forgotten", 0)))
    yield CounterMetricFamily("pd_relay_channel_incidents_forgotten", "Incidents the channels "
                              "forgot, oldest first, past their bound: an acknowledge or "
                              "resolve of one reaches no channel",
                              value=float(stats.get("heard_forgotten", 0)))
    yield from per_channel(stats, (
        ("digests", "Digests made for the channel, each one message for several notices "
         "(relay.channels.gather)"),
        ("muted_dropped", "Messages dropped while the channel (or its use) was muted with "
         "muted: drop")))
    yield from gatherings(client, names)
    open_ = GaugeMetricFamily("pd_relay_alarm_open", "1 for each of the relay's own open "
                               "alarms (self_alert)", labels=["condition"])
    for condition in sorted(alarms):
        open_.add_metric([condition], 1.0)
    yield open_


def breakers(client: redis.Redis, names: Names, channels: list[str]) -> Iterator[Metric]:
    """Each channel's breaker (relay.channels.breaker): those of the channels that ever
    sent, failed or held a message (a breaker opens only after failures)."""
    with client.pipeline(transaction=False) as pipe:
        for name in channels:
            pipe.hmget(names.breaker(name), "state", "opened", "probes")
        found = pipe.execute()
    open_ = GaugeMetricFamily("pd_relay_channel_breaker_open", "1 while the channel's breaker "
                              "is open (its messages held, one probe a cool-down), else 0",
                              labels=["channel"])
    opened = CounterMetricFamily("pd_relay_channel_breaker_opened", "Times the channel's "
                                 "breaker opened", labels=["channel"])
    probes = CounterMetricFamily("pd_relay_channel_breaker_probes", "Probes sent to the "
                                 "channel while its breaker was open", labels=["channel"])
    for name, (state, times, probed) in zip(channels, found, strict=True):
        open_.add_metric([name], 1.0 if state == "open" else 0.0)
        opened.add_metric([name], float(times or 0))
        probes.add_metric([name], float(probed or 0))
    yield from (open_, opened, probes)


def gatherings(client: redis.Redis, names: Names) -> Iterator[Metric]:
    """The open gatherings (relay.channels.gather) per channel and reason (muted, digest,
    breaker, backlog), and the notices they hold; two round trips, at most OPEN_READ
    gatherings read."""
    found = open_gatherings(client, names)
    opened = GaugeMetricFamily("pd_relay_channel_gatherings", "Gatherings open: notices "
                               "kept for one digest to the channel, by why (muted, digest, "
                               "breaker, backlog: the channel behind its bound of jobs)",
                               labels=["channel", "reason"])
    held = GaugeMetricFamily("pd_relay_channel_gathered", "Notices held in the channel's "
                             "open gatherings, waiting for their digest, by why",
                             labels=["channel", "reason"])
    for channel, rows in sorted(found.items()):
        for reason, (count, notices) in sorted(rows.items()):
            opened.add_metric([channel, reason], float(count))
            held.add_metric([channel, reason], float(notices))
    yield from (opened, held)


def per_channel(stats: dict[str, str], counters: tuple[tuple[str, str], ...]) -> Iterator[Metric]:
    """A counter per ``<channel>:<kind>`` field of the channels' stats, by channel."""
    for kind, text in counters:
        family = CounterMetricFamily(f"pd_relay_channel_{kind}", text, labels=["channel"])
        for field, value in sorted(stats.items()):
            name, _, found = field.rpartition(":")
            if name and found == kind:
                family.add_metric([name], float(value))
        yield family
