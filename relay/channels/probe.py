"""``pd-relay send-test --channel NAME | --all-channels``: a test message to each channel,
through its RQ queue and the channel worker, as every message goes; a result per channel
(sent, the channel's refusal, retrying after an error, or no worker took it)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Sequence

import redis
from rq.job import Job, JobStatus

from relay.channels.notice import Notice
from relay.channels.rqjobs import job_id, put_job
from relay.names import Names
from relay.routes.channels import Channel
from relay.store import now_ms


def test_notice() -> Notice:
    host = socket.gethostname()
    dedup_key = f"pd-relay-channel-test-{uuid.uuid4().hex[:12]}"
    summary = f"pd-relay send-test from {host}: a test message, nothing to do"
    event = {"event_action": "trigger", "dedup_key": dedup_key,
             "payload": {"summary": summary, "source": host, "severity": "info",
                         "component": "pd-relay"}}
    return Notice(id=uuid.uuid4().hex, action="trigger", event=event, route="send-test",
                  source="send-test", accepted_ms=now_ms(), severity="info", summary=summary,
                  test=True)


def verdict(job: Job | None) -> str | None:
    """What became of a test message so far; None while it waits for a worker."""
    if job is None:
        return "gone (its job expired)"
    status = job.get_status(refresh=True)
    if status == JobStatus.FINISHED:
        reply = str(job.return_value())[:200]
        if reply.startswith("held:"):  # relay.channels.courier: the breaker is open
            return ("HELD: the channel's breaker is open; it goes out with the held "
                    "messages once a probe is taken (`pd-relay channels status`)")
        return f"sent: {reply}"
    if status == JobStatus.FAILED:
        lines = (job.exc_info or "").strip().splitlines()
        return "FAILED: " + (lines[-1] if lines else "ran out of retries")
    return None


def send_tests(jobs: redis.Redis, names: Names, channels: Sequence[Channel], timeout_s: float,
               say: Callable[[str], None] = print) -> bool:
    """Queue a test message per channel and wait for each; True when all were sent."""
    notice = test_notice()
    for channel in channels:
        put_job(jobs, names, channel, notice)
    say(f"queued a test message to {len(channels)} channel(s); waiting for the channel worker")
    left = {channel.name for channel in channels}
    results: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        for name in sorted(left):
            found = verdict(Job.fetch_many([job_id(notice.id, name)], connection=jobs,
                                           serializer="json")[0])
            if found is not None:
                results[name] = found
                left.discard(name)
                say(f"  {name}: {found}")
        time.sleep(0.2)
    stats = names.channel_stats
    for name in sorted(left):
        error = jobs.hget(stats, f"{name}:error")
        results[name] = "not sent yet"
        say(f"  {name}: not sent within {timeout_s:.0f}s: " + (
            f"retrying after: {_text(error)}" if error else
            "is `pd-relay channel-worker` running? see `pd-relay channels status`"))
    return all(result.startswith("sent") for result in results.values()) and not left


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
