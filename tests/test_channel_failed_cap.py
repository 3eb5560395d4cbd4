"""RQ's failed registry is capped per channel (``failed_max``, oldest first, counted
``<name>:failed_forgotten``) as well as in all (FAILED_MAX): a channel refusing
everything keeps at most its cap, and with its breaker on far fewer (what comes after
the breaker opened is held, not failed)."""

from __future__ import annotations

import json

import fakeredis

from relay.channels import jobs
from relay.channels.notice import Entry
from relay.channels.rqjobs import put_job, rq_queue, trim_failed
from relay.channels.worker import ChannelWorker
from relay.names import Names
from relay.routes.channels import Breaker, Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.store import Record
from tests.conftest import trigger
from tests.receivers import WebhookReceiver
from tests.test_channel_breaker_courier import Parked

NAMES = Names("pdr")


def notices(n: int) -> list:
    found = []
    for i in range(n):
        raw = f"1\n{json.dumps({'id': f'n{i}', 'c': ['x'], 'r': 'db', 's': 'x'})}\n"
        found.append(Entry.parse(raw + Record("alert", trigger(f"e{i}"), 0).encode())
                     .notice("db", "critical", f"event {i}"))
    return found


def run(channels: tuple[Channel, ...], count: int, parked: Parked) -> fakeredis.FakeRedis:
    server = fakeredis.FakeServer()
    jobs_client = fakeredis.FakeRedis(server=server)
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    jobs.install(jobs.Courier(client, Settings(), RoutesFile(channels=channels),
                              sleep=lambda s: None,
                              gatherings=parked))
    try:
        for notice in notices(count):
            for channel in channels:
                assert put_job(jobs_client, NAMES, channel, notice)
        ChannelWorker([rq_queue(jobs_client, NAMES, c.name) for c in channels],
                      connection=jobs_client, serializer="json").work(
            burst=True, logging_level="ERROR")
    finally:
        jobs.install(None)  # type: ignore[arg-type]
    return jobs_client


def failed(jobs_client: fakeredis.FakeRedis, name: str) -> list[str]:
    return rq_queue(jobs_client, NAMES, name).failed_job_registry.get_job_ids()


def test_a_channel_refusing_everything_keeps_at_most_its_cap_of_failed_messages(
        hooks: WebhookReceiver) -> None:
    hooks.script("/no", steady=(403, {}, "workflow disabled"))
    no_breaker = Channel("refuses", "webhook", url=f"{hooks.url}/no", retries=0,
                         failed_max=5, breaker=Breaker(failures=0), per_minute=600)
    other = Channel("other", "webhook", url=f"{hooks.url}/no", retries=0, failed_max=50,
                    breaker=Breaker(failures=0), per_minute=600)
    parked = Parked()
    jobs_client = run((no_breaker, other), 12, parked)
    assert len(failed(jobs_client, "refuses")) == len(failed(jobs_client, "other")) == 12
    caps = {"refuses": 5, "other": 50}
    oldest = failed(jobs_client, "refuses")[:7]
    assert trim_failed(jobs_client, NAMES, ["refuses", "other"], caps=caps) == 7
    kept = failed(jobs_client, "refuses")
    assert len(kept) == 5 and not set(oldest) & set(kept)  # the oldest went
    assert all(not jobs_client.exists(f"rq:job:{job}") for job in oldest)
    assert len(failed(jobs_client, "other")) == 12  # under its own cap
    stats = jobs_client.hgetall(NAMES.channel_stats)
    assert stats[b"refuses:failed_forgotten"] == b"7" and stats[b"failed_forgotten"] == b"7"
    assert b"other:failed_forgotten" not in stats
    # and the cap of all channels still holds after each channel's own
    assert trim_failed(jobs_client, NAMES, ["refuses", "other"], keep=10, caps=caps) == 7
    assert len(failed(jobs_client, "refuses")) + len(failed(jobs_client, "other")) == 10
    assert jobs_client.hget(NAMES.channel_stats, "failed_forgotten") == b"14"
    assert not parked


def test_with_its_breaker_a_refusing_channel_fails_a_few_and_holds_the_rest(
        hooks: WebhookReceiver) -> None:
    hooks.script("/no", steady=(404, {}, "no_such_hook"))
    channel = Channel("refuses", "webhook", url=f"{hooks.url}/no", retries=0, failed_max=5,
                      breaker=Breaker(failures=3, cooldown_s=300), per_minute=600)
    parked = Parked()
    jobs_client = run((channel,), 40, parked)
    assert len(failed(jobs_client, "refuses")) == 2  # the third refusal opened it: held
    assert len(parked) == 38 and hooks.tries("/no") == 3
