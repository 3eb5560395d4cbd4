"""The channels' RQ jobs: made (``put_job``), counted (``rq_backlog``) and their failed
ones bounded (``trim_failed``); what each may cost in Redis.

A job holds its channel's name and a notice (``relay.channels.notice``), at most
``NOTICE_BYTES`` of JSON whatever the sender sent, so a job takes at most ``JOB_BYTES``
of Redis (its hash; RQ compresses the notice, which this bound does not count on); or a
digest (``relay.channels.digest``, ``put_digest_job``), at most ``DIGEST_JOB_BYTES``,
counted with the others in the backlog's bound. RQ keeps a job in three places, each
bounded:

- waiting (queued, or scheduled for a retry): at most ``CHANNEL_BACKLOG_MAX`` jobs per
  channel (fewer with many channels: all of them fit ``RQ_BACKLOG_MAX``), past which
  the channel's new notices are gathered into a digest (``backlog``), and at most
  ``RQ_BACKLOG_MAX`` jobs in all channels (the dispatcher makes no more:
  relay.channels.outbox);
- sent: ``RESULT_TTL_S`` after it finished (so a dispatcher's crash recovered within that
  time repeats no message), at most the channels' paces (``per_minute``) times that;
- failed (refused, or out of retries): at most each channel's ``failed_max`` jobs and
  ``FAILED_MAX`` in all, each with its error (``FAILED_JOB_BYTES`` in all), as long as
  dead letters; past that the oldest are deleted first, counted (``failed_forgotten``,
  and ``<channel>:failed_forgotten`` for a channel's own cap). A channel that refuses
  everything opens its breaker (relay.channels.breaker) after a few failures: what comes
  after is held, not failed, so its registry stays small anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.results import Result

from relay.channels.digest import DIGEST_BYTES, Digest
from relay.channels.notice import NOTICE_BYTES, Notice
from relay.names import Names
from relay.routes.channels import Channel

JOB = "relay.channels.jobs.deliver"
DIGEST_JOB = "relay.channels.jobs.deliver_digest"
# a digest job's failure callback (also of an abandoned one): held again while its
# channel's breaker is open (relay.channels.courier.Courier.hold_again)
DIGEST_FAILED = "relay.channels.jobs.digest_failed"
JOB_BYTES = NOTICE_BYTES + 1024  # the notice, RQ's fields and the description
DIGEST_JOB_BYTES = DIGEST_BYTES + 1024  # a digest's job
FAILED_JOB_BYTES = JOB_BYTES + 4096  # and its stored error (a traceback, a reply)
# Most jobs waiting in RQ (queued or scheduled for a retry, all channels) before the
# dispatcher stops making more: at most ~9 MB (a job is ~1.5 KB for a usual event).
RQ_BACKLOG_MAX = 1_000
# Most jobs waiting for one channel: past it, its new notices are gathered into a digest
# (relay.channels.decide), so one slow or paced channel never holds up the others (a
# Slack channel at 60 a minute sends these in under two minutes).
CHANNEL_BACKLOG_MAX = 100
FAILED_MAX = 500  # failed jobs kept, all channels: at most ~6.5 MB
RESULT_TTL_S = 60  # a sent job's hash and reply: then RQ deletes them
# A job's meta (relay.channels.jobs.run): its sends that failed, counted against its
# channel's ``retries``, and the seconds it was handed back to wait (the pace, pauses).
# ``channels requeue`` clears both.
FAILED_SENDS = "failed_sends"
WAITED_S = "waited_s"


class Wait(Retry):
    """Try again after a wait (the channel's pace, or its pause): no send failed, so it
    counts toward no ``retries``."""


def wait_max_s(channel: Channel) -> float:
    """How long a message may wait for its channel's pace and pauses before it fails.
    At most ``RQ_BACKLOG_MAX`` jobs wait in all and the channel takes ``per_minute`` of
    them a minute, so one served in turn waits at most RQ_BACKLOG_MAX / per_minute
    minutes; twice that (RQ takes them only roughly in turn), and at least an hour."""
    return max(3600.0, 2 * 60 * RQ_BACKLOG_MAX / max(1, channel.per_minute))


def rq_queue(connection: redis.Redis, names: Names, channel: str) -> Queue:
    return Queue(names.channel_queue(channel), connection=connection, serializer="json")


def put_job(connection: redis.Redis, names: Names, channel: Channel, notice: Notice,
            kept_days: float = 30.0) -> bool:
    """Queue ``notice`` for ``channel``; False when its job exists already. A failed job
    is kept ``kept_days`` (as dead letters are: ``RELAY_DEAD_LETTER_DAYS``), at most
    ``FAILED_MAX`` of them (``trim_failed``)."""
    return _put(connection, names, channel, JOB, notice.to_json(),
                job_id(notice.id, channel.name),
                f"{channel.name}: {notice.state} {notice.event.get('dedup_key', '')}", kept_days)


def put_digest_job(connection: redis.Redis, names: Names, channel: Channel, digest: Digest,
                   kept_days: float = 30.0) -> bool:
    """Queue ``digest`` for ``channel`` (``relay.channels.jobs.deliver_digest``); False
    when its job exists already (its id is made of the digest's, unique per channel)."""
    return _put(connection, names, channel, DIGEST_JOB, digest.to_json(),
                job_id(digest.id, channel.name),
                f"{channel.name}: digest of {digest.total} notice(s) ({digest.reason})",
                kept_days, Callback(DIGEST_FAILED))


def _put(connection: redis.Redis, names: Names, channel: Channel, function: str,
         data: dict[str, object], made_id: str, description: str, kept_days: float,
         on_failure: Callback | None = None) -> bool:
    try:
        rq_queue(connection, names, channel.name).enqueue(
            function, channel.name, data, job_id=made_id, unique=True,
            description=description, job_timeout=int(channel.timeout_s * 3 + 60),
            result_ttl=RESULT_TTL_S, failure_ttl=int(kept_days * 86_400),
            on_failure=on_failure)
    except DuplicateJobError:
        return False
    return True


def rq_waiting(connection: redis.Redis, names: Names,
               channels: Sequence[str]) -> dict[str, int]:
    """Jobs waiting in each channel's RQ queue and retry schedule (one round trip)."""
    with connection.pipeline(transaction=False) as pipe:
        for name in channels:
            queue = rq_queue(connection, names, name)
            pipe.llen(queue.key)
            pipe.zcard(ScheduledJobRegistry(queue=queue).key)  # type: ignore[no-untyped-call]
        found = [int(n) for n in pipe.execute()]
    return {name: found[2 * i] + found[2 * i + 1] for i, name in enumerate(channels)}


def rq_backlog(connection: redis.Redis, names: Names, channels: Sequence[str]) -> int:
    """Jobs waiting in the channels' RQ queues and retry schedules, all channels."""
    return sum(rq_waiting(connection, names, channels).values())


def trim_failed(connection: redis.Redis, names: Names, channels: Sequence[str],
                keep: int = FAILED_MAX, caps: Mapping[str, int] | None = None) -> int:
    """Delete the oldest failed jobs past each channel's cap in ``caps`` (its
    ``failed_max``; counted ``<channel>:failed_forgotten``), then past ``keep`` (all
    channels); return how many went, all counted as ``failed_forgotten`` in
    ``Names.channel_stats``. One round trip when there is nothing to delete."""
    keys = [FailedJobRegistry(queue=rq_queue(connection, names, name)).key
            for name in channels]
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(key)
        counts = [int(n) for n in pipe.execute()]
    caps = caps or {}
    over = {key: (name, count - caps[name]) for name, key, count in zip(channels, keys, counts,
                                                                           strict=True)
            if name in caps and count > caps[name]}
    excess = sum(counts) - sum(n for _, n in over.values()) - keep
    if not over and excess <= 0:
        return 0
    # a failed job's score is when it expires (failure_ttl, the same for all): oldest first
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrange(key, 0, max(excess, 0) + over.get(key, ("", 0))[1] - 1,
                        withscores=True)
        rows = dict(zip(keys, pipe.execute(), strict=True))
    found = []
    for key, (name, n) in over.items():  # each channel's own cap first
        found += [(score, key, member, name) for member, score in rows[key][:n]]
        rows[key] = rows[key][n:]
    if excess > 0:
        found += sorted((score, key, member, "") for key in keys
                        for member, score in rows[key])[:excess]
    with connection.pipeline(transaction=False) as pipe:
        for _, key, member, _ in found:
            job = member.decode() if isinstance(member, bytes) else str(member)
            pipe.zrem(key, member)
            pipe.delete(Job.key_for(job), Result.get_key(job))  # type: ignore[no-untyped-call]
        pipe.hincrby(names.channel_stats, "failed_forgotten", len(found))
        for name, n in over.values():
            pipe.hincrby(names.channel_stats, f"{name}:failed_forgotten", n)
        pipe.execute()
    return len(found)


def job_id(notice: str, channel: str) -> str:
    """The one job id of a notice to a channel (RQ's ids take letters, digits, - and _)."""
    return f"{notice}-{hashlib.blake2b(channel.encode(), digest_size=4).hexdigest()}"
