"""The ``pd-relay`` command: ingress, worker, status, dead-letters, simulator, stack."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import redis

from relay import queues
from relay.errors import ConfigError
from relay.keys import choose_key, key_id, mask
from relay.logs import configure, printable
from relay.names import Names
from relay.routes import maintenance
from relay.routes.commands import add_routes_parsers, routes_command, token_new
from relay.settings import Settings
from relay.status import format_decisions, format_table, read_status
from relay.store import connect, memory_problems
from relay.tally import read as read_decisions

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stack"]:  # runs a whole stack: it reads its settings its own way
        from relay.stack.command import main as stack

        return stack(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "simulator":
            return _simulator(args)
        if args.command == "token":
            return token_new(args)
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"pd-relay: {exc}", file=sys.stderr)
        return 2
    configure(args.command, settings.log_level, settings.log_format, settings.routing_keys)
    try:
        result: int = COMMANDS[args.command](settings, args)
        return result
    except redis.RedisError as exc:
        print(f"pd-relay: cannot reach Redis at {settings.redis_shown}: "
              f"{str(exc).replace(settings.redis_url, settings.redis_shown)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _removed_keys_left_something(settings: Settings, redis_down: int = logging.WARNING) -> bool:
    """Record the configured keys; print every removed key that still has events or open
    incidents, and return True if one does. Redis unreachable: a line at ``redis_down``'s
    level (0: raise), since a process can start before Redis (it stores nothing
    meanwhile, and checks again at its next start)."""
    from relay.keyring import register

    try:
        leftovers = register(connect(settings), Names(settings.prefix), settings)
    except redis.RedisError as exc:
        if not redis_down:
            raise
        log.log(redis_down, "Redis does not answer (%s): keys removed with events left are "
                "checked when the relay's processes start", type(exc).__name__)
        return False
    for leftover in leftovers:
        print(f"pd-relay: {leftover.problem(settings.keys_file)}", file=sys.stderr)
    return bool(leftovers)


def _redis_memory_problems(settings: Settings, level: int) -> bool:
    """Log each problem of Redis's memory settings at ``level``; True when there is one."""
    try:
        problems = memory_problems(connect(settings), settings)
    except redis.RedisError:
        return False  # not reachable: said elsewhere
    for problem in problems:
        log.log(level, "%s", problem)
    return bool(problems)


def _ingress(settings: Settings, args: argparse.Namespace) -> int:
    import waitress

    from relay.app import create_app

    if _removed_keys_left_something(settings):
        return 2
    _redis_memory_problems(settings, logging.ERROR)
    app = create_app(settings)
    policy = app.extensions["pd_relay_policy"]
    signal.signal(signal.SIGHUP, lambda signum, frame: policy.reload())
    tally = app.extensions["pd_relay_tally"]
    tally.start()
    from relay.routes.windows import Windows, follow

    stopping = threading.Event()
    follow(Windows(connect(settings), Names(settings.prefix).maintenance), policy.set_windows,
           stopping)
    log.info(
        "ingress on http://%s:%d for %d routing key(s), Redis %s",
        args.host, args.port, len(settings.routing_keys), settings.redis_shown,
    )
    _exit_on_sigterm()
    waitress.serve(
        app,
        host=args.host,
        port=args.port,
        threads=settings.threads,
        ident="pd-relay",
        # Flask answers bodies over the limit with a JSON 413; waitress only stops absurd ones.
        max_request_body_size=settings.max_body_bytes * 4,
    )
    stopping.set()
    tally.stop()
    tally.flush()
    log.info("ingress stopped")
    return 0


def _exit_on_sigterm() -> None:
    """Make SIGTERM end the process normally: a server's loop ends on SystemExit (waitress
    lets the requests under way finish), and the log lines still batched are written."""

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker.delivery import Worker

    keys = settings.routing_keys
    if args.routing_key is not None:
        key = args.routing_key
        if key not in keys:
            print(f"pd-relay: routing key {mask(key)} is not in {settings.keys_file}",
                  file=sys.stderr)
            return 2
    elif args.key_id is not None:
        by_id = {key_id(k): k for k in keys}
        if args.key_id not in by_id:
            print(f"pd-relay: no key with id {args.key_id} in {settings.keys_file}",
                  file=sys.stderr)
            return 2
        key = by_id[args.key_id]
    elif 0 <= args.key_index < len(keys):
        key = keys[args.key_index]
    else:
        print(f"pd-relay: --key-index {args.key_index} is out of range: "
              f"{settings.keys_file} holds keys 0 to {len(keys) - 1}", file=sys.stderr)
        return 2
    if _removed_keys_left_something(settings):
        return 2
    client = connect(settings, block_s=settings.lease_ttl_s + 1)
    worker = Worker(settings, key, client)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        worker.interrupt()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    client = connect(settings)
    names = Names(settings.prefix)
    while True:
        rows = read_status(client, names, settings)
        decisions = read_decisions(client, names.decisions)
        if args.json:
            print(json.dumps({"keys": rows, **decisions, "open_relay": settings.allow_anonymous},
                             indent=2))
        else:
            if args.watch:
                print("\033[H\033[J", end="")
            if settings.allow_anonymous:
                print("WARNING: open relay: anyone who can reach it may send events "
                      "(RELAY_ALLOW_ANONYMOUS)", file=sys.stderr)
            print(format_table(rows))
            if decisions["routes"] or decisions["sources"]:
                print("\n" + format_decisions(decisions))
        if not args.watch:
            return 0
        sys.stdout.flush()
        time.sleep(args.watch)


def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from relay.deadletters import DeadLetters

    store = DeadLetters(connect(settings), Names(settings.prefix), settings.routing_keys)
    if args.action == "list":
        letters = store.list(args.limit)
        if args.json:
            print(json.dumps({"dead_letters": letters}, indent=2))
        for letter in [] if args.json else letters:
            when = datetime.fromtimestamp(letter["failed_at"] / 1000, UTC).isoformat()
            print(printable(f"{letter['id']}  {when[:19]}Z  {letter['routing_key']}  "
                            f"{letter['status']}  {letter['event']}  {letter['reason']}", 500))
        if not args.json and not letters:
            print("no dead letters")
        return 0
    if args.action == "show":
        found = store.get(args.id)
        if found is None:
            print(f"pd-relay: no dead letter {args.id}", file=sys.stderr)
            return 1
        print(json.dumps(found, indent=2))
        return 0
    ids = store.ids() if args.all else args.ids
    if not ids:
        print("pd-relay: name dead-letter ids, or --all", file=sys.stderr)
        return 2
    act = store.replay if args.action == "replay" else store.purge
    failed = 0
    for dead_id in ids:
        outcome = act(dead_id)
        failed += outcome not in ("replayed", "purged")
        print(f"{dead_id}: {outcome}")
    return 1 if failed else 0


def _simulator(args: argparse.Namespace) -> int:
    from simulator.pagerduty import serve

    configure("simulator", "INFO", "text")
    faults: dict[str, Any] = {"limit": args.limit, "window_s": args.window_s}
    _exit_on_sigterm()
    try:
        serve(args.host, args.port, **faults)
    except KeyboardInterrupt:
        pass
    return 0


def _send_test(settings: Settings, args: argparse.Namespace) -> int:
    from relay.probe import send_test

    key = None
    if args.key_index is not None:
        if not 0 <= args.key_index < len(settings.routing_keys):
            print(f"pd-relay: --key-index {args.key_index} is out of range", file=sys.stderr)
            return 2
        key = settings.routing_keys[args.key_index]
    else:  # named in the events, so that a relay that requires keys takes them
        active = [k for k in settings.routing_keys if k not in settings.draining_keys]
        key = choose_key(active, uuid.uuid4().hex)
    ok = send_test(args.url, connect(settings), Names(settings.prefix), key, args.timeout)
    print("test incident reached PagerDuty" if ok else "test FAILED")
    return 0 if ok else 1


def _check(settings: Settings, args: argparse.Namespace) -> int:
    count = len(settings.routing_keys)
    if _removed_keys_left_something(settings, 0 if args.redis else logging.INFO):
        return 2
    if args.redis and _redis_memory_problems(settings, logging.ERROR):
        return 2
    draining = f", {len(settings.draining_keys)} draining" if settings.draining_keys else ""
    print(f"configuration ok: {count} routing key(s){draining} in {settings.keys_file}")
    return 0


def _forget_key(settings: Settings, args: argparse.Namespace) -> int:
    from relay.keyring import forget

    try:
        moved = forget(connect(settings), Names(settings.prefix), settings, args.key_id)
    except ValueError as exc:
        print(f"pd-relay: {exc}", file=sys.stderr)
        return 2
    print(f"forgot key {args.key_id}: {moved} event(s) moved to the dead letters "
          "(`pd-relay dead-letters list`), its open incidents forgotten")
    return 0


COMMANDS = {
    "check": _check, "ingress": _ingress, "worker": _worker, "status": _status,
    "routes": routes_command, "maintenance": maintenance.command, "queue": queues.command,
    "dead-letters": _dead_letters, "send-test": _send_test, "forget-key": _forget_key,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pd-relay",
        description="Queue-buffered relay to the PagerDuty Events API v2. "
        "Settings come from RELAY_* environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check", help="check the settings, the keys file and (when Redis answers) that no "
        "removed key left events behind, then exit")
    check.add_argument("--redis", action="store_true",
                       help="fail when Redis cannot be reached, instead of warning")

    forget = sub.add_parser(
        "forget-key", help="move a removed key's queued and in-flight events to the dead "
        "letters and forget its open incidents (stop its workers first)")
    forget.add_argument("key_id", metavar="KEY_ID", help="the id start-up or status names")

    ingress = sub.add_parser("ingress", help="serve the HTTP ingress (Flask under waitress)")
    ingress.add_argument("--host", default="127.0.0.1")
    ingress.add_argument("--port", type=int, default=8080)

    worker = sub.add_parser("worker", help="deliver one routing key's events to PagerDuty")
    which = worker.add_mutually_exclusive_group(required=True)
    which.add_argument("--routing-key", metavar="KEY")
    which.add_argument("--key-index", type=int, metavar="N",
                       help="the Nth key of the keys file, counting from 0")
    which.add_argument("--key-id", metavar="ID",
                       help="the key with this id (`pd-relay status` shows ids)")

    status = sub.add_parser("status", help="show each key's queue and delivery figures")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=float, nargs="?", const=2.0, default=0.0,
                        metavar="SECONDS", help="refresh every SECONDS (default 2)")

    dead = sub.add_parser("dead-letters", help="list, show, replay or purge dead letters")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=int, default=0, help="only the newest N")
    actions.add_parser("show").add_argument("id")
    for name in ("replay", "purge"):
        act = actions.add_parser(name)
        act.add_argument("ids", nargs="*", metavar="ID")
        act.add_argument("--all", action="store_true")

    probe = sub.add_parser(
        "send-test", help="send a self-resolving test incident through the relay and wait")
    port = os.environ.get("PD_RELAY_PORT") or "8080"
    probe.add_argument("--url", default=f"http://127.0.0.1:{port}",
                       help="the relay's address (default: this machine, PD_RELAY_PORT or 8080)")
    probe.add_argument("--key-index", type=int, metavar="N",
                       help="test this key (default: one of the active keys, at random)")
    probe.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")

    sub.add_parser("stack", add_help=False,
                   help="run a whole stack: pd-relay stack up|down|status|reload|logs|relay")
    add_routes_parsers(sub)
    maintenance.add_parser(sub)
    queues.add_parser(sub)
    sim = sub.add_parser("simulator", help="run the PagerDuty stand-in (tests, demo)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--limit", type=int, default=120, help="calls per key per window")
    sim.add_argument("--window-s", type=float, default=60.0)
    return parser


if __name__ == "__main__":
    sys.exit(main())
