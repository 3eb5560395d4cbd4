"""``pd-relay channels status|failed|requeue``: each channel's queue as RQ keeps it (queued,
waiting to retry, failed), what it sent and held, its breaker, its last error; the failed
messages with the channel's reply; and sending them again with a fresh set of retries."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from relay.channels.breakerstate import breaker_line, state_of
from relay.channels.gather import open_gatherings
from relay.channels.outbox import HEARD_MAX
from relay.channels.rqjobs import FAILED_MAX, FAILED_SENDS, RQ_BACKLOG_MAX, WAITED_S, rq_queue
from relay.logs import printable
from relay.names import Names
from relay.routes.channels import Breaker
from relay.routes.config import load_or_none
from relay.settings import Settings
from relay.store import connect


def add_parser(sub: Any) -> None:
    channels = sub.add_parser("channels", help="the channels' queues, failed messages, requeue")
    verbs = channels.add_subparsers(dest="verb", required=True, metavar="VERB")
    status = verbs.add_parser("status", help="each channel: queued, retrying, failed, sent, "
                              "last error")
    status.add_argument("--json", action="store_true")
    failed = verbs.add_parser("failed", help="the messages a channel refused or that ran out "
                              "of retries, with the channel's reply")
    failed.add_argument("name", nargs="?", metavar="NAME", help="one channel (default: all)")
    failed.add_argument("--json", action="store_true")
    requeue = verbs.add_parser("requeue", help="send failed messages again, with fresh retries")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", metavar="ID", help="a failed message's id")
    which.add_argument("--all", action="store_true", help="every failed message (of NAME)")
    requeue.add_argument("--channel", metavar="NAME", help="with --all: of this channel only")


def command(settings: Settings, args: argparse.Namespace) -> int:
    names = Names(settings.prefix)
    defined = load_or_none(settings.routes_file, settings.key_names).channels
    channels = [c.name for c in defined]
    client, jobs = connect(settings), connect(settings, decode=False)
    if args.verb == "status":
        return status(client, jobs, names, channels, args.json,
                      {c.name: c.breaker for c in defined})
    chosen = [args.name] if getattr(args, "name", None) else channels
    if args.verb == "requeue" and args.channel:
        chosen = [args.channel]
    unknown = [name for name in chosen if name not in channels]
    if unknown:
        print(f"pd-relay: no channel named {unknown[0]} in the routes file", file=sys.stderr)
        return 2
    if args.verb == "failed":
        return failed(jobs, names, chosen, args.json)
    return requeue(jobs, names, chosen, None if args.all else args.id)


def read(client: redis.Redis, jobs: redis.Redis, names: Names, channels: list[str],
         breakers: Mapping[str, Breaker] | None = None) -> dict[str, Any]:
    """Each channel's figures and breaker (``breakers``: their settings, for the
    window's counts and to say "off"), and the outbox's."""
    stats: dict[str, str] = client.hgetall(names.channel_stats)  # type: ignore[assignment]
    rows = []
    now_ms = int(time.time() * 1000)
    gathering = open_gatherings(client, names)
    for name in channels:
        queue = rq_queue(jobs, names, name)
        at = int(stats.get(f"{name}:error_at", 0))
        settings = (breakers or {}).get(name, Breaker())
        breaker = state_of(client.hgetall(names.breaker(name)), now_ms,
                           settings).to_json()
        if settings.failures <= 0:
            breaker["state"] = "off"
        rows.append({
            "channel": name, "queued": queue.count,
            "retrying": ScheduledJobRegistry(queue=queue).count,  # type: ignore[no-untyped-call]
            "sending": StartedJobRegistry(queue=queue).count,
            "failed": FailedJobRegistry(queue=queue).count,
            "sent": int(stats.get(f"{name}:sent", 0)),
            "digests": int(stats.get(f"{name}:digests", 0)),  # made (relay.channels.gather)
            "muted_dropped": int(stats.get(f"{name}:muted_dropped", 0)),
            "paused_s": max(0, int(client.pttl(names.channel_pause(name)))) / 1000,
            "last_error": stats.get(f"{name}:error", ""),
            "last_error_ago_s": int(time.time()) - at if at else None,
            "held": breaker["held"], "held_total": int(stats.get(f"{name}:held", 0)),
            "failed_forgotten": int(stats.get(f"{name}:failed_forgotten", 0)),
            "gathered": {reason: notices for reason, (_, notices) in
                         sorted(gathering.get(name, {}).items())},  # waiting for digests
            "breaker": breaker,
        })
    return {"channels": rows, "outbox": {
        "waiting": client.llen(names.outbox), "taken": client.llen(names.outbox_taken),
        "bytes": int(stats.get("bytes", 0)), "skipped": int(stats.get("skipped", 0)),
        "rq_jobs": int(stats.get("dispatch_backlog", 0)),
        "held": int(stats.get("dispatch_held", 0)),
        "incidents_forgotten": int(stats.get("heard_forgotten", 0)),
        "failed_forgotten": int(stats.get("failed_forgotten", 0)),
        "dispatcher": client.get(names.dispatcher)}}


def status(client: redis.Redis, jobs: redis.Redis, names: Names, channels: list[str],
           as_json: bool, breakers: Mapping[str, Breaker] | None = None) -> int:
    found = read(client, jobs, names, channels, breakers)
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'CHANNEL':<20} {'QUEUED':>7} {'RETRYING':>8} {'FAILED':>7} {'SENT':>8} "
          f"{'HELD':>6} {'BREAKER':<7}  LAST ERROR")
    for row in found["channels"]:
        error = f"{printable(row['last_error'][:60])} ({row['last_error_ago_s']} s ago)" \
            if row["last_error"] else "-"
        print(f"{row['channel']:<20} {row['queued'] + row['sending']:>7} {row['retrying']:>8} "
              f"{row['failed']:>7} {row['sent']:>8} {row['held']:>6} "
              f"{row['breaker']['state']:<7}  {error}")
    for row in found["channels"]:
        if row["breaker"]["state"] == "open":
            print(f"{row['channel']}: {breaker_line(row['breaker'])}")
    for row in found["channels"]:
        if row["gathered"]:
            print(f"{row['channel']}: {sum(row['gathered'].values())} notice(s) gathered for "
                  "digests (" + ", ".join(f"{reason} {n}" for reason, n in
                                          row["gathered"].items()) + ")")
    outbox = found["outbox"]
    print(f"outbox: {outbox['waiting']} waiting, {outbox['taken']} being made jobs, "
          f"{outbox['skipped']} skipped when full; dispatcher: {outbox['dispatcher'] or 'none'}")
    if outbox["held"]:
        print(f"dispatcher held back {outbox['held']} time(s): {outbox['rq_jobs']} jobs waiting "
              f"in RQ now (it makes no more at {RQ_BACKLOG_MAX}; the outbox keeps the rest)")
    if outbox["failed_forgotten"]:
        print(f"{outbox['failed_forgotten']} failed message(s) deleted, oldest first, to keep "
              f"at most {FAILED_MAX}")
    if outbox["incidents_forgotten"]:
        print(f"{outbox['incidents_forgotten']} incident(s) forgotten past the channels' "
              f"memory ({HEARD_MAX}): their acknowledge or resolve reached no channel")
    if not found["channels"]:
        print("no channels in the routes file")
    return 0


def failed_jobs(jobs: redis.Redis, names: Names, channel: str) -> list[Job]:
    registry = FailedJobRegistry(queue=rq_queue(jobs, names, channel))
    found = Job.fetch_many(registry.get_job_ids(), connection=jobs, serializer="json")
    return [job for job in found if job is not None]


def failed(jobs: redis.Redis, names: Names, channels: list[str], as_json: bool) -> int:
    rows = []
    for name in channels:
        for job in failed_jobs(jobs, names, name):
            notice = job.args[1] if len(job.args) > 1 else {}
            result = job.latest_result()
            error = ((result.exc_string if result else "") or "").strip().splitlines()
            rows.append({"id": job.id, "channel": name, "state": notice.get("action"),
                         "dedup_key": notice.get("event", {}).get("dedup_key"),
                         "failed_at": job.ended_at.isoformat() if job.ended_at else None,
                         "error": error[-1] if error else "ran out of retries"})
    rows.sort(key=lambda row: row["failed_at"] or "")
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(printable(f"{row['id']}  {row['channel']}  {row['state']} dedup_key="
                        f"{row['dedup_key']}  {row['failed_at']}", 400) + "\n    "
              + printable(row["error"], 600))
    print(f"{len(rows)} failed message(s)" + ("; send again with `pd-relay channels requeue "
                                             "ID|--all`" if rows else ""))
    return 0


def requeue(jobs: redis.Redis, names: Names, channels: list[str], wanted: str | None) -> int:
    done = 0
    for name in channels:
        registry = FailedJobRegistry(queue=rq_queue(jobs, names, name))
        for job in failed_jobs(jobs, names, name):
            if wanted is None or job.id == wanted:
                job.number_of_retries = None  # a fresh set of retries, and of waiting
                for key in (FAILED_SENDS, WAITED_S):
                    job.meta.pop(key, None)
                job.save()
                job.save_meta()  # type: ignore[no-untyped-call] # (save skips an empty meta)
                registry.requeue(job)
                done += 1
    if wanted is not None and not done:
        print(f"pd-relay: no failed message {wanted}", file=sys.stderr)
        return 1
    print(f"requeued {done} message(s)")
    return 0
