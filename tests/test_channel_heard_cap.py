"""Channels' memory of incidents is capped like the incidents (issue 23, review).

RELAY_INCIDENTS_MAX caps each key's remembered incidents and the held ones, but the
channels' memory of each incident (``pdr:heard:<incident>``, one string key per
triggered incident a channel heard of, summary included, kept RELAY_INCIDENT_TTL_S = 7
days) had no cap: it grew by one key per distinct dedup_key, at the channels' pace
(600 a minute for a webhook: millions a week), and least_redis_mb does not count it.
Now it holds at most min(RELAY_INCIDENTS_MAX, HEARD_MAX) incidents, oldest forgotten
first (an order, ``pdr:heard-order``, beside the memories), counted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import fakeredis

from relay.app import create_app
from relay.channels.commands import read
from relay.channels.notice import Notice
from relay.channels.outbox import HEARD_SUMMARY_BYTES, Dispatcher
from relay.names import Names
from relay.routes.channels import Channel
from tests.conftest import UNIX, one_channel, trigger

NAMES = Names("pdr")


def test_channel_memory_of_incidents_is_capped_like_the_incidents(
        tmp_path: Path, keys: tuple[str, ...]) -> None:
    settings = replace(one_channel(tmp_path, keys[0], '{name: hook, type: webhook, url: '
                                   '"https://y"}'), incidents_max=10)
    fake = fakeredis.FakeRedis(decode_responses=True)
    app = create_app(settings, client=fake).test_client()
    for start in range(0, 200, 50):
        events = [trigger("x" * 1000, dedup_key=f"f{n}") for n in range(start, start + 50)]
        assert app.post("/v2/enqueue", json=events).status_code == 202
    dispatcher = Dispatcher(fake, NAMES, settings,
                            {"hook": Channel("hook", "webhook", url="https://y")},
                            lambda channel, notice: True, sleep=lambda s: None)
    while dispatcher.step(0):
        pass
    remembered = sum(fake.zcard(NAMES.incidents(kid)) for kid in
                     [k.split(":")[-1] for k in fake.keys("pdr:incidents:*")])
    heard = fake.keys("pdr:heard:*")
    assert remembered <= settings.incidents_max
    assert len(heard) <= settings.incidents_max, (
        f"{len(heard)} heard keys for {remembered} remembered incidents, "
        f"{sum(len(fake.get(k)) for k in heard)} bytes")
    assert fake.zcard(NAMES.heard_order) == len(heard)


def test_a_flood_of_incidents_keeps_the_newest_and_counts_the_forgotten(
        tmp_path: Path, keys: tuple[str, ...]) -> None:
    settings = one_channel(tmp_path, keys[0], '{name: hook, type: webhook, url: "https://y"}')
    fake = fakeredis.FakeRedis(decode_responses=True)
    app = create_app(settings, client=fake).test_client()
    now = [1_000.0]
    sent: list[Notice] = []

    def put(channel: Channel, notice: Notice) -> bool:
        sent.append(notice)
        return True

    dispatcher = Dispatcher(fake, NAMES, settings,
                            {"hook": Channel("hook", "webhook", url="https://y")}, put,
                            sleep=lambda s: None, clock=lambda: now[0], heard_max=25)
    for start in range(0, 300, 20):
        events = [trigger("\U0001f525" * 1000, dedup_key=f"f{n}")
                  for n in range(start, start + 20)]
        assert app.post("/v2/enqueue", json=events).status_code == 202
        while dispatcher.step(0):
            now[0] += 1
    memories = fake.keys("pdr:heard:*")
    assert len(memories) == 25 and fake.zcard(NAMES.heard_order) == 25
    assert int(fake.hget(NAMES.channel_stats, "heard_forgotten") or 0) == 275
    assert max(len(fake.get(k)) for k in memories) <= HEARD_SUMMARY_BYTES + 100
    sent.clear()
    resolves = [{"event_action": "resolve", "dedup_key": f"f{n}"} for n in (0, 274, 275, 299)]
    assert app.post("/v2/enqueue", json=resolves).status_code == 202
    while dispatcher.step(0):
        pass
    # the newest 25 are remembered: their resolves reach the channel, the older ones' not
    assert [n.event["dedup_key"] for n in sent] == ["f275", "f299"]
    assert all(n.state == "resolved" and n.summary.startswith("\U0001f525") for n in sent)
    assert fake.zcard(NAMES.heard_order) == 23
    metrics = app.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    assert "pd_relay_channel_incidents_forgotten_total 275.0" in metrics
    assert read(fake, fake, NAMES, ["hook"])["outbox"]["incidents_forgotten"] == 275

