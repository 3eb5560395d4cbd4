"""The loops the channel worker (relay.channels.worker) runs: RQ's worker (``work``: a new
one after a Redis error, until a signal stops it), RQ's scheduler (``schedule``), the
dispatcher (``dispatch``: under its lease) and the heartbeats' evaluator (``evaluate``),
each but RQ's worker in a thread of its own.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.scheduler import RQScheduler
from rq.worker import DequeueStrategy

from relay.channels.maintenance import Notices
from relay.channels.outbox import Dispatcher
from relay.errors import DeliveryError
from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.pages import Pages
from relay.heartbeats.store import Heartbeats
from relay.housekeeping import jobs as keeper
from relay.names import Names
from relay.routes.config import RoutesFile
from relay.settings import Settings

log = logging.getLogger(__name__)
LEASE_MS = 10_000
HEARTBEAT_EVERY_S = 1.0  # an evaluation round: a missed deadline paged within a second
HEARTBEAT_LEASE_S = 3.0  # at least: a crashed evaluator's successor starts within it


def work(queues: list[Queue], jobs_client: redis.Redis, name: str, quiet: str,
          on_stop: Callable[[], object]) -> None:
    """RQ's worker until a signal stops it (``on_stop`` is told when it comes)."""
    for run in itertools.count():
        # RQ's worker quits on a Redis error outside its wait for jobs (a job's
        # bookkeeping when the primary died under it): start another, not exit
        worker = None
        try:
            worker = ChannelWorker(queues, connection=jobs_client, serializer="json",
                                   name=f"{name}-{run}" if run else name)
            worker.on_stop = on_stop
            worker.work(dequeue_strategy=DequeueStrategy.ROUND_ROBIN, logging_level=quiet)
        except redis.RedisError as exc:  # its start or teardown (noting its end) failed too
            log.error("RQ's worker: %s: %s", type(exc).__name__, exc)
        if worker is not None and worker.stopping:
            break
        log.error("RQ's worker stopped on a Redis error; starting it again in 1 s")
        try:
            time.sleep(1)
        except StopRequested:  # a signal meanwhile: RQ's handler is still installed
            break


def evaluate(client: redis.Redis, names: Names, settings: Settings, routes: RoutesFile,
             stop: threading.Event, wait_s: float = 1.0) -> None:
    """Run the heartbeats' evaluator until ``stop``, its pages stored as events. The
    checks added at run time are read before its first round (it drops a page of a check
    it does not know) and again in the background. A send (one ENQUEUE) may take the Redis
    client's timeout: the lease outlasts that by a second at least."""
    catalog = Catalog(routes, Heartbeats(client, names))
    while not stop.is_set():
        try:
            catalog.refresh()
            break
        except redis.RedisError as exc:
            log.error("heartbeats: the run-time checks: %s: %s; trying again in %g s",
                      type(exc).__name__, exc, wait_s)
            stop.wait(wait_s)
    catalog.follow(stop)
    budget = settings.redis_timeout_s + (
        settings.replica_timeout_ms / 1000 if settings.min_replicas else 0.0)
    evaluator = Evaluator(client, names, catalog, Pages(client, names, settings, routes).send,
                          interval_s=HEARTBEAT_EVERY_S, send_budget_s=budget,
                          lease_ttl_s=max(HEARTBEAT_LEASE_S, budget + 1.0),
                          holder=f"{socket.gethostname()}:{os.getpid()}")
    while not stop.is_set():
        try:
            evaluator.run(stop)
        except Exception:  # noqa: BLE001 - whatever it was, the checks must go on
            log.exception("heartbeats: the evaluator failed; starting it again in %g s",
                          wait_s)
            stop.wait(wait_s)


def no_redis_traceback(record: logging.LogRecord) -> bool:
    """RQ's "unhandled exception, quitting" for a Redis error: one line (the loop above
    starts its worker again), not a traceback."""
    if record.exc_info and isinstance(record.exc_info[1], redis.RedisError):
        exc = record.exc_info[1]
        record.msg = f"{record.msg} ({type(exc).__name__}: {exc})"
        record.exc_info, record.exc_text = None, None
    return True


class ChannelWorker(SimpleWorker):
    """RQ's in-process worker; a channel's refusal is logged once, as a warning, by the
    courier: RQ's ERROR with a traceback is kept for what is not a channel's answer."""

    stopping = False  # a signal asked it to stop (RQ's own flag misses an idle worker)
    on_stop: Callable[[], object] | None = None  # told at once (RQ's teardown may take long)

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stopping = True
        if self.on_stop is not None:
            self.on_stop()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def unsubscribe(self) -> None:
        """RQ's, with a bound: redis-py 8's ``stop()`` waits for RQ's pubsub thread,
        which a stop coming as the worker starts finds in a read of up to 60 s (RQ's
        ``sleep_time``): the channel worker then took a minute to stop. The thread (a
        daemon) ends by itself after that read, closing its pubsub."""
        thread = self.pubsub_thread
        if not thread:
            return
        self.pubsub.unsubscribe()
        thread._running.clear()  # what stop() does, without its unbounded join
        thread.join(timeout=1)
        if not thread.is_alive():
            self.pubsub.close()

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if isinstance(exc_info[1], DeliveryError):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
        else:
            super().handle_exception(job, *exc_info)


def schedule(scheduler: RQScheduler, settings: Settings, housekeeping: Queue | None,
             sleep: Any = time.sleep) -> None:
    """RQ's scheduler loop, in a thread: queue the jobs whose time has come (retries), and
    each period's housekeeping job."""
    made: dict[str, int] = {}
    while True:
        try:
            if housekeeping is not None:
                keeper.due(housekeeping, settings, made)
            if scheduler.should_reacquire_locks:
                scheduler.acquire_locks()  # type: ignore[no-untyped-call]
            if scheduler.acquired_locks:
                scheduler.heartbeat()  # type: ignore[no-untyped-call]
                scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            log.error("scheduler: %s: %s; trying again in 1 s", type(exc).__name__, exc)
        sleep(scheduler.interval)


def dispatch(dispatcher: Dispatcher, sleep: Any = time.sleep,
             notices: Notices | None = None) -> None:
    """Hold the dispatcher's lease when it is free and turn notices into jobs, and tell
    of maintenance windows (``notices``); forever."""
    holding = False
    while True:
        try:
            if not dispatcher.hold():
                holding = False
                sleep(LEASE_MS / 3000)
                continue
            if not holding:
                holding = True
                found = dispatcher.recover()
                log.info("dispatching the outbox%s",
                         f" ({found} notice(s) left taken by the last dispatcher)" if found else "")
            dispatcher.step(1)
            if notices is not None:
                notices.run()
        except redis.RedisError as exc:
            log.error("dispatcher: %s: %s; trying again in 1 s", type(exc).__name__, exc)
            holding = False  # what the step left taken is taken over first (recover)
            sleep(1)
