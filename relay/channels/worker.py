"""``pd-relay channel-worker``: an RQ worker on every channel's queue and the housekeeping
queue (taken in turn, so a busy channel never starves the others), with two threads: the
dispatcher (``outbox``) and RQ's scheduler (which queues retries when they are due, and
each period's housekeeping job: relay/housekeeping/). Run one or several: the dispatcher
and the scheduler each work in one of them at a time, under their locks.

Nothing is forked: jobs run in the worker's own process (RQ's SimpleWorker), and the
scheduler runs in a thread, not in the child process RQ's ``with_scheduler`` forks (a
child that outlives a killed worker and keeps its lock). SIGTERM lets the job under way
finish (RQ's warm shutdown).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.scheduler import RQScheduler
from rq.worker import DequeueStrategy

from relay.channels import jobs
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import put_job, rq_backlog, rq_queue, trim_failed
from relay.errors import DeliveryError
from relay.housekeeping import jobs as keeper
from relay.names import Names
from relay.routes.config import load_or_none
from relay.settings import Settings
from relay.store import connect

log = logging.getLogger(__name__)
LEASE_MS = 10_000


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("channel-worker", help="send the routes file's channels their "
                            "messages and run the relay's housekeeping and self-alerts (an RQ "
                            "worker with RQ's scheduler)")
    worker.add_argument("--channel", action="append", metavar="NAME",
                        help="serve only this channel's queue (repeatable; default: every "
                             "channel's and the housekeeping queue)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    routes = load_or_none(settings.routes_file, settings.key_names)
    served = args.channel or [c.name for c in routes.channels]
    unknown = [name for name in served if name not in {c.name for c in routes.channels}]
    if unknown:
        print(f"pd-relay: no channel named {unknown[0]} in the routes file")
        return 2
    names = Names(settings.prefix)
    client, jobs_client = connect(settings), connect(settings, decode=False)
    jobs.install(jobs.Courier(client, settings, routes))
    channels = {c.name: c for c in routes.channels}
    dispatcher = Dispatcher(connect(settings, block_s=1), names, settings, channels,
                            lambda channel, notice: put_job(jobs_client, names, channel, notice,
                                                            settings.dead_letter_days),
                            LEASE_MS,
                            backlog=lambda: rq_backlog(jobs_client, names, list(channels)),
                            trim=lambda: trim_failed(jobs_client, names, list(channels)))
    queues = [rq_queue(jobs_client, names, name) for name in served]
    every = [rq_queue(jobs_client, names, name) for name in channels]
    housekeeping = None if args.channel else \
        Queue(names.housekeeping_queue, connection=jobs_client, serializer="json")
    if housekeeping is not None:
        keeper.install(keeper.Housekeeper(client, names, settings, routes, every))
        queues.append(housekeeping)
    scheduler = RQScheduler(queues, connection=connect(settings, decode=False),
                            serializer="json")
    threading.Thread(target=dispatch, args=(dispatcher,), name="dispatcher", daemon=True).start()
    threading.Thread(target=schedule, args=(scheduler, settings, housekeeping),
                     name="scheduler", daemon=True).start()
    log.info("channel worker for %s%s", ", ".join(f"{c.name} ({c.shown})" for c in
                                                   routes.channels if c.name in served)
             or "no channels", "" if args.channel else ", and the housekeeping")
    # RQ's own lines for every job (started, completed, result kept) only when debugging:
    # each message's outcome is logged by the courier, each alarm by the self-check
    quiet = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    logging.getLogger("rq.worker").addFilter(_no_redis_traceback)
    name = f"pd-relay-{socket.gethostname()}-{os.getpid()}"
    for run in itertools.count():
        # RQ's worker quits on a Redis error outside its wait for jobs (a job's
        # bookkeeping when the primary died under it): start another, not exit
        worker = None
        try:
            worker = ChannelWorker(queues, connection=jobs_client, serializer="json",
                                   name=f"{name}-{run}" if run else name)
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
    return 0


def _no_redis_traceback(record: logging.LogRecord) -> bool:
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

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stopping = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

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


def dispatch(dispatcher: Dispatcher, sleep: Any = time.sleep) -> None:
    """Hold the dispatcher's lease when it is free and turn notices into jobs; forever."""
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
        except redis.RedisError as exc:
            log.error("dispatcher: %s: %s; trying again in 1 s", type(exc).__name__, exc)
            sleep(1)
