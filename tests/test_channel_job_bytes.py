"""The channels' RQ jobs are bounded in bytes, not only in count (issue 23, review).

The backlog bound was RQ_BACKLOG_MAX = 10,000 jobs, each assumed about 1.8 KB. But every
job carried the sender's whole event (Notice.event, custom_details included): one
sender's large events made each job hundreds of KB, so the bound let RQ hold gigabytes
(and sent jobs stayed an hour, failed ones 30 days, outside the bound). A full Redis then
refuses pages; SHED cannot free RQ's jobs. Now a notice holds only what channels show,
cut (NOTICE_BYTES), the backlog is 1,000 jobs, a sent job is kept RESULT_TTL_S and the
failed ones are at most FAILED_MAX."""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from relay.app import create_app
from relay.channels import jobs, messages
from relay.channels.notice import NOTICE_BYTES, Entry, Notice
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import (
    FAILED_JOB_BYTES,
    FAILED_MAX,
    JOB_BYTES,
    RESULT_TTL_S,
    RQ_BACKLOG_MAX,
    put_job,
    rq_queue,
    trim_failed,
)
from relay.channels.worker import ChannelWorker
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.store import Record
from tests.conftest import one_channel, trigger
from tests.receivers import WebhookReceiver

NAMES = Names("pdr")
RESERVED = 32 * 2**20  # least_redis_mb's room for dead letters, counters and RQ's jobs


def job_bytes(client: fakeredis.FakeRedis, job: str) -> int:
    """What a job holds in Redis: its hash's fields and values, and its results' stream."""
    key = f"rq:job:{job}".encode()
    found = sum(len(f) + client.hstrlen(key, f) for f in client.hkeys(key))
    for _, fields in client.xrange(f"rq:results:{job}"):
        found += sum(len(k) + len(v) for k, v in fields.items())
    return found


def test_the_rq_backlog_bound_holds_in_bytes_with_large_events(tmp_path: Path,
                                                                keys: tuple[str, ...]) -> None:
    settings = one_channel(tmp_path, keys[0], '{name: chat, type: slack, url: "https://x"}')
    jobs_client = fakeredis.FakeRedis()
    fake = fakeredis.FakeRedis(server=jobs_client.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    app = create_app(settings, client=fake).test_client()
    blob = base64.b64encode(random.Random(0).randbytes(300_000)).decode()  # ~400 KB
    event = trigger("disk full", dedup_key="big", payload={
        "summary": "disk full", "source": "db-1", "severity": "critical",
        "custom_details": {"dump": blob, "runbook": "https://wiki.example/disk"}})
    assert app.post("/v2/enqueue", json=event).status_code == 202
    channels = {"chat": Channel("chat", "slack", url="https://x")}
    Dispatcher(fake, NAMES, settings, channels,
               lambda channel, notice: put_job(jobs_client, NAMES, channel, notice),
               sleep=lambda s: None).step(1)
    job_keys = [k for k in jobs_client.keys("rq:job:*") if b":dependents" not in k]
    assert len(job_keys) == 1
    per_job = sum(jobs_client.hstrlen(job_keys[0], f) for f in jobs_client.hkeys(job_keys[0]))
    # the bound in bytes: as many such jobs as the dispatcher lets wait
    assert RQ_BACKLOG_MAX * per_job <= RESERVED, (
        f"one job holds {per_job} bytes: {RQ_BACKLOG_MAX} of them are "
        f"{RQ_BACKLOG_MAX * per_job / 2**30:.1f} GiB")
    assert per_job <= JOB_BYTES
    # what a channel shows is still there: the small detail, the dump cut and said so
    data = jobs_client.hget(job_keys[0], "data")
    notice = Notice.from_json(json.loads(__import__("zlib").decompress(data))[2][1])
    details = notice.event["payload"]["custom_details"]
    assert details["runbook"] == "https://wiki.example/disk" and details["dump"].endswith("…")


def hostile(chars: str, seed: int) -> dict[str, Any]:
    """An event with every field far past what the ingress lets in, of random text that
    compresses badly."""
    rnd = random.Random(seed)

    def junk(n: int) -> str:
        return "".join(rnd.choices(chars, k=n))

    return {"event_action": "trigger", "dedup_key": junk(5000), "client": junk(5000),
            "client_url": junk(5000), "images": [{"src": junk(50_000)}], "extra": junk(9000),
            "links": [{"href": junk(5000), "text": junk(5000), "more": junk(500)}
                      for _ in range(100)],
            "payload": {"summary": junk(5000), "source": junk(5000), "severity": junk(500),
                        "timestamp": junk(500), "component": junk(5000), "group": junk(5000),
                        "class": junk(5000), "other": junk(9000),
                        "custom_details": {junk(500): {"deep": [junk(3000)] * 5}
                                           for _ in range(200)}}}


ASTRAL = "".join(chr(c) for c in range(0x1F300, 0x1F3FF))
CHARSETS = [string.printable, ASTRAL + "\u202e\x9b\x00\"\\", "a"]


@pytest.mark.parametrize("chars", CHARSETS, ids=["ascii", "astral", "repeated"])
def test_a_notice_and_its_job_are_bounded_whatever_the_event_holds(chars: str) -> None:
    event = hostile(chars, 1)
    raw = f"1\n{json.dumps({'id': 'n' * 64, 'c': ['chat'], 'r': 'db', 's': 'x'})}\n"
    entry = Entry.parse(raw + Record("alert", event, 0).encode())
    notice = entry.notice("db", "critical", event["payload"]["summary"])
    assert len(json.dumps(notice.to_json())) <= NOTICE_BYTES
    client = fakeredis.FakeRedis()
    channel = Channel("c" * 64, "webhook", url="https://x")
    assert put_job(client, NAMES, channel, notice)
    job = next(k for k in client.keys("rq:job:*")).decode().removeprefix("rq:job:")
    assert job_bytes(client, job) <= JOB_BYTES
    # and every channel can still write it
    for kind in ("slack", "mattermost", "teams", "webex", "webhook", "email"):
        messages.message(Channel("c", kind, url="https://x", room="r"), notice)


def test_what_channels_read_of_a_usual_event_is_kept_whole() -> None:
    event = trigger("disk full on db-1", dedup_key="disk", payload={
        "summary": "disk full on db-1", "source": "db-1", "severity": "critical",
        "component": "pg", "group": "prod", "class": "disk",
        "custom_details": {"free": 0, "mounts": ["/", "/var"], "runbook": "https://w/x"}},
        links=[{"href": "https://grafana/d/1", "text": "dashboard"}],
        client="Grafana", client_url="https://grafana/")
    raw = f"1\n{json.dumps({'id': 'n1', 'c': ['chat'], 'r': 'db', 's': 'x'})}\n"
    notice = Entry.parse(raw + Record("alert", event, 0).encode()).notice(
        "db", "critical", "disk full on db-1")
    assert notice.event == event
    assert messages.context(notice)["summary"] == "disk full on db-1"


def test_sent_jobs_go_after_result_ttl_and_failed_ones_are_capped(
        hooks: WebhookReceiver) -> None:
    server = fakeredis.FakeServer()
    jobs_client = fakeredis.FakeRedis(server=server)
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    good = Channel("good", "webhook", url=f"{hooks.url}/ok", retries=0)
    gone = [Channel(f"gone{n}", "webhook", url="https://x", retries=0) for n in range(2)]
    # the courier knows only "good": the others' jobs fail (refused, with a traceback)
    jobs.install(jobs.Courier(client, Settings(), RoutesFile(channels=(good,)),
                              sleep=lambda s: None))
    notices = []
    for n in range(8):
        event = hostile(string.printable, n)
        raw = f"1\n{json.dumps({'id': f'n{n}', 'c': ['x'], 'r': 'db', 's': 'x'})}\n"
        notices.append(Entry.parse(raw + Record("alert", event, 0).encode())
                       .notice("db", "critical", "disk"))
    try:
        for notice in notices:
            for channel in (good, *gone):
                assert put_job(jobs_client, NAMES, channel, notice)
        queues = [rq_queue(jobs_client, NAMES, c.name) for c in (good, *gone)]
        ChannelWorker(queues, connection=jobs_client, serializer="json").work(
            burst=True, logging_level="ERROR")
    finally:
        jobs.install(None)  # type: ignore[arg-type]
    assert len(hooks.requests) == 8
    sent = [k for k in jobs_client.keys("rq:job:n*") if b"-" in k and
            jobs_client.hget(k, "status") == b"finished"]
    assert len(sent) == 8 and all(0 < jobs_client.ttl(k) <= RESULT_TTL_S for k in sent)
    failed = {c.name: rq_queue(jobs_client, NAMES, c.name).failed_job_registry.get_job_ids()
              for c in gone}
    assert all(len(ids) == 8 for ids in failed.values()), failed
    biggest = max(job_bytes(jobs_client, job) for ids in failed.values() for job in ids)
    assert all(jobs_client.xlen(f"rq:results:{job}") for job in failed["gone0"])  # counted
    assert biggest <= FAILED_JOB_BYTES
    # past the bound, the oldest failed jobs go first, hash and result, counted
    assert trim_failed(jobs_client, NAMES, [c.name for c in (good, *gone)], keep=5) == 11
    kept = {c.name: rq_queue(jobs_client, NAMES, c.name).failed_job_registry.get_job_ids()
            for c in gone}
    assert sum(len(ids) for ids in kept.values()) == 5
    for name, ids in failed.items():
        for job in set(ids) - set(kept[name]):
            assert not jobs_client.exists(f"rq:job:{job}", f"rq:results:{job}")
    assert int(client.hget(NAMES.channel_stats, "failed_forgotten")) == 11
    assert trim_failed(jobs_client, NAMES, [c.name for c in gone], keep=5) == 0


def test_the_dispatcher_trims_each_round_and_the_bound_in_bytes() -> None:
    fake = fakeredis.FakeRedis(decode_responses=True)
    rounds: list[int] = []
    dispatcher = Dispatcher(fake, NAMES, Settings(), {}, lambda c, n: True,
                            trim=lambda: rounds.append(1) or 0, sleep=lambda s: None)
    for _ in range(3):
        dispatcher.step(0)
    assert rounds == [1, 1, 1]
    # what the README and DESIGN say RQ's waiting and failed jobs cost at most
    assert RQ_BACKLOG_MAX * JOB_BYTES + FAILED_MAX * FAILED_JOB_BYTES <= 16 * 2**20
