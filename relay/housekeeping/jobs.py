"""The housekeeping jobs, and when each is due (``due``: the scheduler thread of the
channel worker makes each period's job once, under a fixed id)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from rq import Queue
from rq.exceptions import DuplicateJobError

from relay.housekeeping import retention, selfcheck
from relay.names import Names
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.store import now_ms

log = logging.getLogger(__name__)
JOBS = {"self-check": "relay.housekeeping.jobs.self_check",
        "retention": "relay.housekeeping.jobs.retention_sweep"}


@dataclass
class Housekeeper:
    client: redis.Redis
    names: Names
    settings: Settings
    routes: RoutesFile
    queues: Sequence[Queue] = ()  # the channels' RQ queues

    def self_check(self) -> str:
        found = selfcheck.conditions(self.client, self.names, self.settings, self.routes,
                                     self.queues)
        raised, resolved = selfcheck.Alarms(self.client, self.names, self.settings,
                                            self.routes).check(found)
        return f"{len(found)} condition(s); raised {raised or 'none'}, resolved " \
               f"{resolved or 'none'}"

    def retention(self) -> dict[str, int]:
        return retention.sweep(self.client, self.names, self.settings, now_ms(), self.queues)


_keeper: Housekeeper | None = None


def install(keeper: Housekeeper) -> None:
    global _keeper
    _keeper = keeper


def _installed() -> Housekeeper:
    if _keeper is None:
        raise RuntimeError("run housekeeping jobs with `pd-relay channel-worker`")
    return _keeper


def self_check() -> str:
    """The RQ job: raise and resolve the relay's own alarms."""
    return _installed().self_check()


def retention_sweep() -> dict[str, int]:
    return _installed().retention()


def due(queue: Queue, settings: Settings, made: dict[str, int],
        now: float | None = None) -> list[str]:
    """Make the jobs whose period began since ``made`` says; return their ids. A period's
    job has one id, so another scheduler's copy is refused."""
    now = time.time() if now is None else now
    ids = []
    for name, every in (("self-check", settings.self_check_s),
                        ("retention", settings.retention_s)):
        period = int(now // every)
        job = JOBS[name]
        if made.get(name) == period:
            continue
        made[name] = period
        try:
            queue.enqueue(job, job_id=f"{name}-{period}", unique=True, result_ttl=600,
                          failure_ttl=86_400, job_timeout=300, description=name)
        except DuplicateJobError:
            continue
        ids.append(f"{name}-{period}")
    return ids
