"""``pd-relay channel-worker``: an RQ worker on every channel's queue and the housekeeping
queue (taken in turn, so a busy channel never starves the others), with two threads: the
dispatcher (``outbox``) and RQ's scheduler (which queues retries when they are due, and
each period's housekeeping job: relay/housekeeping/), and, with the housekeeping, a third:
the heartbeats' evaluator (relay.heartbeats.evaluator: every second, pages stored by
relay.heartbeats.pages). The dispatcher also tells of maintenance windows
(relay.channels.maintenance). Run one or several: the dispatcher, the scheduler and the
evaluator each work in one of them at a time, under their locks (the evaluator's lease
lapses within ``HEARTBEAT_LEASE_S`` of a crash, so another notices a missed deadline
within that and a round; a stopped worker releases it at once).

Nothing is forked: jobs run in the worker's own process (RQ's SimpleWorker), and the
scheduler runs in a thread, not in the child process RQ's ``with_scheduler`` forks (a
child that outlives a killed worker and keeps its lock). SIGTERM lets the job under way
finish (RQ's warm shutdown). The loops themselves are relay.channels.loops; this module
wires them up for the command.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from rq import Queue
from rq.scheduler import RQScheduler

from relay.channels import jobs
from relay.channels.loops import (
    HEARTBEAT_LEASE_S,
    LEASE_MS,
    ChannelWorker,
    dispatch,
    evaluate,
    no_redis_traceback,
    schedule,
    work,
)
from relay.channels.maintenance import Notices, Watched
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import put_digest_job, put_job, rq_queue, rq_waiting, trim_failed
from relay.housekeeping import jobs as keeper
from relay.names import Names
from relay.routes.config import RoutesFile, load_or_none
from relay.settings import Settings
from relay.startup import exit_on_sigterm
from relay.store import connect

__all__ = ["HEARTBEAT_LEASE_S", "LEASE_MS", "ChannelWorker", "add_parser",
           "command", "dispatch", "evaluate", "maintenance_notices", "schedule"]
log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("channel-worker", help="send the routes file's channels their "
                            "messages and run the relay's housekeeping and self-alerts (an RQ "
                            "worker with RQ's scheduler)")
    worker.add_argument("--channel", action="append", metavar="NAME",
                        help="serve only this channel's queue (repeatable; default: every "
                             "channel's and the housekeeping queue)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    exit_on_sigterm()  # until RQ's worker takes SIGTERM over: the threads still stop
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
                            LEASE_MS, routes=routes,
                            put_digest=lambda channel, digest: put_digest_job(
                                jobs_client, names, channel, digest, settings.dead_letter_days),
                            backlog=lambda: rq_waiting(jobs_client, names, list(channels)),
                            trim=lambda: trim_failed(jobs_client, names, list(channels), caps={
                                name: c.failed_max for name, c in channels.items()}))
    queues = [rq_queue(jobs_client, names, name) for name in served]
    every = [rq_queue(jobs_client, names, name) for name in channels]
    housekeeping = None if args.channel else \
        Queue(names.housekeeping_queue, connection=jobs_client, serializer="json")
    if housekeeping is not None:
        keeper.install(keeper.Housekeeper(client, names, settings, routes, every))
        queues.append(housekeeping)
    scheduler = RQScheduler(queues, connection=connect(settings, decode=False),
                            serializer="json")
    stop = threading.Event()  # the heartbeats' evaluator and its catalog stop with the worker
    evaluating = None if housekeeping is None else threading.Thread(
        target=evaluate, args=(client, names, settings, routes, stop), name="heartbeats",
        daemon=True)
    if evaluating is not None:
        evaluating.start()
    notices = maintenance_notices(client, names, settings, routes, dispatcher)
    threading.Thread(target=dispatch, args=(dispatcher, time.sleep, notices), name="dispatcher",
                     daemon=True).start()
    threading.Thread(target=schedule, args=(scheduler, settings, housekeeping),
                     name="scheduler", daemon=True).start()
    log.info("channel worker for %s%s", ", ".join(f"{c.name} ({c.shown})" for c in
                                                   routes.channels if c.name in served)
             or "no channels", "" if args.channel else ", and the housekeeping")
    # RQ's own lines for every job (started, completed, result kept) only when debugging:
    # each message's outcome is logged by the courier, each alarm by the self-check
    quiet = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    logging.getLogger("rq.worker").addFilter(no_redis_traceback)
    name = f"pd-relay-{socket.gethostname()}-{os.getpid()}"
    try:
        work(queues, jobs_client, name, quiet, stop.set)
    finally:
        stop.set()
        if evaluating is not None:  # its round under way ends, and its lease is released
            evaluating.join(HEARTBEAT_LEASE_S + settings.redis_timeout_s)
    return 0


def maintenance_notices(client: redis.Redis, names: Names, settings: Settings,
                        routes: RoutesFile, dispatcher: Dispatcher) -> Notices:
    """The maintenance notices, told by the dispatcher and decided as any notice is
    (relay.channels.decide): a muted channel holds them, a digest channel gathers them."""
    return Notices(client, names, dispatcher.channels, Watched(routes, settings.key_names),
                   dispatcher.decider.decide, dispatcher.clock)
