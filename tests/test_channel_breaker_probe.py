"""A probe that is the held digest and whose job ends badly: the digest goes back to the
breaker's gathering, due at the next probe, not to RQ's failed registry, whether its send
failed in a way that is not held (a probe that waited too long, an error of the sender)
or its worker was killed mid-send (RQ's clean-up of an abandoned job calls the job's
failure callback). So the breaker is never left open with nothing to probe with."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from relay.channels import jobs
from relay.channels.courier import HELD, Courier
from relay.channels.digest import Digest
from relay.channels.gather import SEP, Gatherings
from relay.channels.rqjobs import job_id, put_digest_job, rq_queue
from relay.names import Names
from relay.routes.channels import Breaker, Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from tests.test_channel_breaker import Clock
from tests.test_channels import NOTICE, Session

NAMES = Names("pdr")
HOOK = Channel("hook", "webhook", url="https://h.example/x", per_minute=1,
               breaker=Breaker(failures=1, cooldown_s=30))


class Broken(Session):
    """A sender's error that is neither a refusal nor a failure worth a retry."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        if not self.answers:
            raise RuntimeError("the sender broke")
        return super().request(method, url, **kwargs)


def opened(fake: fakeredis.FakeRedis, session: Session) -> tuple[Courier, Clock, Gatherings]:
    """A courier whose channel's breaker just opened (the failed send held), the cool-down
    over: the next ask is the probe."""
    clock = Clock()
    gatherings = Gatherings(fake, NAMES, clock)
    sender = Courier(fake, Settings(prefix="pdr"), RoutesFile(channels=(HOOK,)),
                     session=session, sleep=lambda s: None, jitter=lambda: 1.0,
                     gatherings=gatherings, clock=clock)
    assert sender.deliver("hook", NOTICE, 0) == "held: breaker open"
    clock.at += 30
    fake.delete(NAMES.channel_pause("hook"))
    return sender, clock, gatherings


def digest_of(gatherings: Gatherings, now_ms: int) -> Digest:
    [digest] = gatherings.take_due(now_ms, 10)
    gatherings.forget([digest])
    return digest


def held(fake: fakeredis.FakeRedis) -> tuple[int, int]:
    """(notices in the breaker's gathering, when it is due)."""
    return (int(fake.hget(NAMES.gathering("hook", HELD), "total") or 0),
            int(fake.zscore(NAMES.gatherings_due, f"hook{SEP}{HELD}") or 0))


def test_a_probe_digest_that_waited_too_long_goes_back_to_the_gathering(fake) -> None:
    sender, clock, gatherings = opened(fake, Session((500, {}, "down")))
    digest = digest_of(gatherings, int(clock() * 1000))
    # the probe, but the pace says wait, and it waited its most already: it is held again
    assert sender.deliver_digest("hook", digest.to_json(), 0, 10**9) == "held: breaker open"
    now = int(clock() * 1000)
    assert held(fake) == (1, now)  # the probe was given back: due now, a digest again
    assert fake.hget(NAMES.channel_stats, "hook:held") == "2"  # its notice, then it


def test_a_probe_digest_whose_sender_broke_goes_back_to_the_gathering(fake) -> None:
    sender, clock, gatherings = opened(fake, Broken((500, {}, "down")))
    fake.delete(NAMES.channel_window("hook"))
    digest = digest_of(gatherings, int(clock() * 1000))
    assert sender.deliver_digest("hook", digest.to_json(), 0) == "held: breaker open"
    assert held(fake) == (1, int(clock() * 1000) + 30_000)  # the next probe's time


def test_a_digest_that_fails_while_closed_still_fails(fake) -> None:
    sender, clock, gatherings = opened(fake, Session((500, {}, "down"), (200, {}, "ok")))
    fake.delete(NAMES.channel_window("hook"))
    digest = digest_of(gatherings, int(clock() * 1000))
    assert sender.deliver_digest("hook", digest.to_json(), 0) == "ok"  # closed it
    sender.session = Broken()
    fake.delete(NAMES.channel_window("hook"))
    with pytest.raises(RuntimeError):
        sender.deliver_digest("hook", digest.to_json(), 0)
    assert held(fake) == (0, 0)


def test_a_probe_digest_whose_worker_died_goes_back_to_the_gathering(fake) -> None:
    """RQ's clean-up of an abandoned job (StartedJobRegistry.cleanup) calls its failure
    callback: the digest is held again, due at the next probe."""
    rq_redis = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs["server"])
    sender, clock, gatherings = opened(fake, Session((500, {}, "down")))
    jobs.install(sender)
    try:
        digest = digest_of(gatherings, int(clock() * 1000))
        assert put_digest_job(rq_redis, NAMES, HOOK, digest)
        probe = sender.breakers.ask("hook", HOOK.breaker)  # the worker took it, and died
        assert probe.state == "probe"
        queue = rq_queue(rq_redis, NAMES, "hook")
        job = Job.fetch(job_id(digest.id, "hook"), connection=rq_redis, serializer="json")
        queue.remove(job)
        job.set_status(JobStatus.STARTED)
        started = StartedJobRegistry(queue=queue)
        rq_redis.zadd(started.key, {f"{job.id}:dead": 1})  # its execution long expired
        started.cleanup()
        assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]
        assert held(fake) == (1, probe.probe_at_ms)  # a probe again when that one is due
    finally:
        jobs.install(None)  # type: ignore[arg-type]
