"""The operator's commands: ``status`` (each key's queue and deliveries), ``check`` (the
settings, the keys file, Redis), ``forget-key`` (a removed key's leftovers)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import redis

from relay.errors import ConfigError
from relay.heartbeats.model import Check
from relay.heartbeats.report import Report, as_json, gap_json, gap_note
from relay.heartbeats.report import format_table as format_beats
from relay.heartbeats.report import read as read_beats
from relay.heartbeats.store import Heartbeats
from relay.history.pg import report as record
from relay.keyring import forget
from relay.names import Names
from relay.replication import format_replication, read_replication
from relay.routes.config import load_or_none
from relay.sentinel import is_sentinel
from relay.settings import Settings
from relay.startup import (
    redis_memory_problems,
    removed_keys_left_something,
    warn_of_redis_link,
)
from relay.status import (
    format_decisions,
    format_shed,
    format_table,
    open_alarms,
    read_shed,
    read_status,
)
from relay.store import connect
from relay.tally import read as read_decisions


def add_parsers(sub: Any) -> None:
    check = sub.add_parser(
        "check", help="check the settings, the keys file and (when Redis answers) that no "
        "removed key left events behind, then exit")
    check.add_argument("--redis", action="store_true",
                       help="fail when Redis cannot be reached or would lose events, "
                            "instead of warning")
    forget_key = sub.add_parser(
        "forget-key", help="move a removed key's queued and in-flight events to the dead "
        "letters and forget its open incidents (stop its workers first)")
    forget_key.add_argument("key_id", metavar="KEY_ID", help="the id start-up or status names")
    status = sub.add_parser("status", help="show each key's queue and delivery figures, and "
                            "the heartbeat checks")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=float, nargs="?", const=2.0, default=0.0,
                        metavar="SECONDS", help="refresh every SECONDS (default 2)")


def status(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    names = Names(settings.prefix)
    in_file = file_checks(settings)  # read once (--watch reads Redis again, not the file)
    heartbeats = Report(client, Heartbeats(client, names), lambda: in_file)
    while True:
        rows = read_status(client, names, settings)
        decisions = read_decisions(client, names.decisions)
        alarms = open_alarms(client, names)
        shed = read_shed(client, names)
        replication = read_replication(client, settings)
        checks = heartbeats.checks()
        beats, gap = read_beats(client, heartbeats.reader, checks), heartbeats.gap(checks)
        history = record.read(client, names, settings, int(time.time() * 1000))
        if args.json:
            print(json.dumps({"keys": rows, **decisions, "open_relay": settings.allow_anonymous,
                              "alarms": alarms, "shed": shed, "replication": replication,
                              "heartbeats": [as_json(row) for row in beats],
                              "heartbeat_gap": gap_json(gap),
                              "history": history.as_json() if history else None}, indent=2))
        else:
            if args.watch:
                getattr(sys.stdout, "raw", sys.stdout).write("\033[H\033[J")  # ours
            if settings.allow_anonymous:
                print("WARNING: open relay: anyone who can reach it may send events "
                      "(RELAY_ALLOW_ANONYMOUS)", file=sys.stderr)
            print(format_table(rows))
            if decisions["routes"] or decisions["sources"]:
                print("\n" + format_decisions(decisions))
            shed_line = format_shed(shed)
            if shed_line:
                print("\n" + shed_line)
            if replicated(settings, replication):
                print("\n" + format_replication(replication))
            if history:
                print("\n" + history.line())
            if beats:
                print("\n" + format_beats(beats))
            if gap:
                print("\n" + gap_note(gap))
            for cid, alarm in sorted(alarms.items()):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(alarm.get("since", 0)))
                print(f"ALARM {cid} (since {since} UTC; `pd-relay channels status` and the "
                      "logs say more)")
        if not args.watch:
            return 0
        sys.stdout.flush()
        time.sleep(args.watch)


def file_checks(settings: Settings) -> tuple[Check, ...]:
    """The routes file's heartbeat checks; none, said once, when it does not check."""
    try:
        return load_or_none(settings.routes_file, settings.key_names).heartbeats
    except ConfigError as exc:
        print(f"pd-relay: the routes file's heartbeat checks are not shown: {exc}",
              file=sys.stderr)
        return ()


def check(settings: Settings, args: argparse.Namespace) -> int:
    count = len(settings.routing_keys)
    if removed_keys_left_something(settings, 0 if args.redis else logging.INFO):
        return 2
    if args.redis and redis_memory_problems(settings, logging.ERROR):
        return 2
    warn_of_redis_link(settings.redis_url)
    try:
        replication = read_replication(connect(settings), settings)
    except redis.RedisError:
        replication = None  # not reachable: said above (or checked at start-up)
    if replication is not None and replicated(settings, replication):
        print(format_replication(replication))
        if not replication["enough"]:
            print(f"pd-relay: only {replication['replicas_in_sync']} replica(s) in sync, "
                  f"RELAY_MIN_REPLICAS={settings.min_replicas}: the ingress answers 503 "
                  "and the workers do not send until enough catch up", file=sys.stderr)
            return 2
    draining = f", {len(settings.draining_keys)} draining" if settings.draining_keys else ""
    print(f"configuration ok: {count} routing key(s){draining} in {settings.keys_file}")
    return 0


def replicated(settings: Settings, replication: dict[str, Any]) -> bool:
    """Whether replication is worth a line: a Sentinel URL, replicas wanted or found."""
    return bool(is_sentinel(settings.redis_url) or settings.min_replicas
                or replication["replicas_known"])


def forget_key(settings: Settings, args: argparse.Namespace) -> int:
    try:
        moved = forget(connect(settings), Names(settings.prefix), settings, args.key_id)
    except ValueError as exc:
        print(f"pd-relay: {exc}", file=sys.stderr)
        return 2
    print(f"forgot key {args.key_id}: {moved} event(s) moved to the dead letters "
          "(`pd-relay dead-letters list`), its open incidents forgotten")
    return 0
