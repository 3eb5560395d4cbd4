"""A channel's secret URL or token is in no stored traceback, reply or job (promise 6):
RQ's real worker runs the real courier against loopback endpoints that fail (a refused
connection, a 4xx that echoes the URL, a timeout), and every key and value in Redis is
searched for the secret afterwards (issue 23, finding 5)."""

from __future__ import annotations

import socket
from typing import Any

import fakeredis

from relay.channels import jobs
from relay.channels.notice import Notice
from relay.channels.rqjobs import put_job, rq_queue
from relay.channels.worker import ChannelWorker
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from tests.conftest import trigger
from tests.receivers import WebhookReceiver

NAMES = Names("pdr")
SECRET = "T0SECRET9bd1c2/B0SECRET/xoxSECRETtoken"


def unpacked(value: bytes) -> list[bytes]:
    """``value``, and what it holds if it is zlib data, plain or in base64 (RQ stores
    a job's data as zlib, a result's traceback as base64 of zlib)."""
    import base64
    import binascii
    import zlib

    found = [value]
    for decode in (lambda v: v, base64.b64decode):
        try:
            found.append(zlib.decompress(decode(value)))
        except (zlib.error, binascii.Error, ValueError):
            pass
    return found


def everything(client: fakeredis.FakeRedis) -> bytes:
    """Every key and every value in Redis, as bytes, packed values unpacked."""
    found = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            values = [part for _, fields in client.xrange(key) for pair in fields.items()
                      for part in pair]
        else:
            raise AssertionError(f"a {kind!r} in Redis: search it too")
        found += [form for value in values for form in unpacked(value)]
    return b"\n".join(found)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connections are refused


def test_a_failing_channel_leaves_no_trace_of_its_secret_in_redis(hooks: WebhookReceiver) -> None:
    hooks.script(f"/hooks/{SECRET}", steady=(404, {}, f"no such hook: /hooks/{SECRET}"))
    hanging = socket.socket()  # takes the connection, never answers: a read timeout
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    channels = (
        Channel("refused", "slack", url=f"http://127.0.0.1:{closed_port()}/hooks/{SECRET}",
                retries=0),
        Channel("refusing", "mattermost", url=f"{hooks.url}/hooks/{SECRET}", retries=0),
        Channel("hanging", "webex", token=SECRET, room="R1", retries=0, timeout_s=0.5,
                url=f"http://127.0.0.1:{hanging.getsockname()[1]}/v1/messages?t={SECRET}"),
        Channel("mangled", "webhook", url=f"http://127.0.0.1:0:{SECRET}/x", retries=0),
    )
    jobs_client = fakeredis.FakeRedis()
    client = fakeredis.FakeRedis(server=jobs_client.connection_pool.connection_kwargs["server"],
                                 decode_responses=True)
    settings = Settings(channel_retry_base_s=1, channel_retry_max_s=1)
    jobs.install(jobs.Courier(client, settings, RoutesFile(channels=channels)))
    notice = Notice("n1", "trigger", trigger("disk full", dedup_key="disk"), key="db",
                    severity="critical", summary="disk full")
    try:
        for channel in channels:
            assert put_job(jobs_client, NAMES, channel, notice)
        queues = [rq_queue(jobs_client, NAMES, c.name) for c in channels]
        worker = ChannelWorker(queues, connection=jobs_client, serializer="json")
        worker.work(burst=True, logging_level="ERROR")
    finally:
        hanging.close()
        jobs.install(None)  # type: ignore[arg-type]
    failed = read_failed(jobs_client, channels)
    assert set(failed) == {c.name for c in channels}, failed  # each one failed, and why:
    assert "connection error" in failed["refused"] and "HTTP 404" in failed["refusing"]
    assert "timeout" in failed["hanging"] and "request failed" in failed["mangled"]
    stored = everything(jobs_client)
    assert b"Traceback" in stored  # what was searched holds RQ's stored tracebacks
    for part in SECRET.split("/"):
        assert part.encode() not in stored, stored[stored.find(part.encode()) - 600:][:1200]


def read_failed(connection: Any, channels: tuple[Channel, ...]) -> dict[str, str]:
    from relay.channels.commands import failed_jobs

    found = {}
    for channel in channels:
        for job in failed_jobs(connection, NAMES, channel.name):
            result = job.latest_result()
            found[channel.name] = (result.exc_string if result else "") or ""
    return found
