"""``pd-relay heartbeat add|list|pause|resume|remove|token``: checks at run time (kept in
Redis, ``relay.heartbeats.store``), beside those of the routes file, which ``list``
shows too and ``pause``, ``resume`` and ``token`` work on as well."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from relay.heartbeats.catalog import REFRESH_S, Catalog
from relay.heartbeats.config import Known, check_entry
from relay.heartbeats.model import Check, CheckState
from relay.heartbeats.report import gap_note, recent_gap, redis_now
from relay.heartbeats.schedule import shown
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.routes.config import RoutesFile, load_or_none
from relay.settings import Settings
from relay.store import connect


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("heartbeat", help="add, list, pause, resume or remove heartbeat "
                            "checks (dead man's switches), or make a ping token")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="a check kept in Redis (as the routes file's)")
    add.add_argument("name")
    every = add.add_mutually_exclusive_group(required=True)
    every.add_argument("--period", help="a ping is expected this often: 90s, 5m, 1h, 1d")
    every.add_argument("--cron", help="a ping is expected at each time of this schedule")
    add.add_argument("--tz", help="the cron schedule's time zone (IANA; default UTC)")
    add.add_argument("--grace", help="how late is still fine (default 5m)")
    add.add_argument("--severity", help="the page's (default critical)")
    add.add_argument("--summary", help="the page's (default: Heartbeat NAME is down; with "
                     "--watchdog: Watchdog silent: heartbeat NAME is down)")
    add.add_argument("--keys", help="key names the page goes to, comma-separated")
    add.add_argument("--channels", help="channels that hear of it, comma-separated")
    add.add_argument("--route", help="take this route's keys and channels")
    add.add_argument("--sources", help="sources whose API keys may ping it (default: any)")
    add.add_argument("--watchdog", action="append", metavar="MATCHER",
                     help="an alert with these labels is a ping, e.g. "
                     "'alertname=\"Watchdog\"' (repeatable: all must match)")
    listing = actions.add_parser("list", help="every check, its state, last ping and deadline")
    listing.add_argument("--json", action="store_true")
    for action, text in (("pause", "expect nothing and page nothing until a ping or resume"),
                         ("resume", "a paused check waits for its first ping again"),
                         ("remove", "forget a check added at run time"),
                         ("token", "make a new ping token (shown once; replaces the last)")):
        actions.add_parser(action, help=text).add_argument("name")


def command(settings: Settings, args: argparse.Namespace) -> int:
    routes = load_or_none(settings.routes_file, settings.key_names)
    store = Heartbeats(connect(settings), Names(settings.prefix))
    catalog = Catalog(routes, store)
    catalog.refresh()
    if args.action == "add":
        return _add(settings, routes, store, args)
    if args.action == "list":
        return _list(catalog, store, args.json)
    check = catalog.get(args.name)
    if check is None:
        print(f"pd-relay: no heartbeat check {args.name!r}", file=sys.stderr)
        return 1
    if args.action == "remove":
        if check.origin == "file":
            print(f"pd-relay: {args.name} is in the routes file ({settings.routes_file}): "
                  "remove it there", file=sys.stderr)
            return 2
        was_open = _incident_open(store, check)
        store.remove(args.name)
        print(f"heartbeat {args.name} removed (its state, last pings and ping token too)" + (
            f"; its open incident ({check.dedup_key}) is resolved (reason removed)"
            if was_open else ""))
        return 0
    if args.action == "token":
        token = store.new_token(args.name)
        print(f"ping token for {args.name} (shown once: put it in the pinger's URL, keep no "
              f"copy; it replaces the previous one):\n  {token}\n"
              f"  curl -fsS -m 10 --retry 5 -o /dev/null https://RELAY/ping/{token}/{args.name}")
        return 0
    if args.action == "pause":
        store.pause(args.name, in_file=check.origin == "file")
        print(f"heartbeat {args.name} paused: nothing is expected or paged until its next "
              "ping or `pd-relay heartbeat resume`" + (
                  f" (its incident {check.dedup_key} stays open until its next success)"
                  if _incident_open(store, check) else ""))
        return 0
    if not store.resume(args.name):
        print(f"pd-relay: heartbeat {args.name} is not paused", file=sys.stderr)
        return 1
    print(f"heartbeat {args.name} resumed: it waits for its first ping (new)")
    return 0


def _incident_open(store: Heartbeats, check: Check) -> bool:
    return bool(store.client.hget(store.names.heartbeat(check.name), "open"))


def _add(settings: Settings, routes: RoutesFile, store: Heartbeats,
         args: argparse.Namespace) -> int:
    if any(check.name == args.name for check in routes.heartbeats):
        print(f"pd-relay: {args.name} is a check of the routes file already", file=sys.stderr)
        return 2
    entry: dict[str, Any] = {"name": args.name}
    for field in ("period", "cron", "tz", "grace", "severity", "summary", "route"):
        if getattr(args, field) is not None:
            entry[field] = getattr(args, field)
    for field in ("keys", "channels", "sources"):
        if getattr(args, field) is not None:
            entry[field] = [item.strip() for item in getattr(args, field).split(",")
                            if item.strip()]
    if args.watchdog:
        entry["watchdog"] = args.watchdog
    problems: list[str] = []
    known = Known(settings.key_names, {c.name: c for c in routes.channels},
                  {r.name: (r.keys, r.channels, r.drop) for r in routes.routes},
                  [s.name for s in routes.sources])
    check = check_entry("", entry, known,
                        lambda at, text: problems.append(f"--{at.split('[')[0]}: {text}"
                                                         if at != "check" else text),
                        origin="cli")
    if check is None:
        for problem in problems:
            print(f"pd-relay: {problem}", file=sys.stderr)
        return 2
    if not store.add(check):
        print(f"pd-relay: a run-time check {args.name!r} exists already "
              "(pd-relay heartbeat remove it first)", file=sys.stderr)
        return 1
    print(f"heartbeat {args.name} added ({_schedule(check)}, grace {shown(check.grace_s)}); "
          f"it is new until its first ping; ingress nodes know it within {REFRESH_S:g}s")
    return 0


def _schedule(check: Check) -> str:
    if check.cron is not None:
        return f"cron {check.cron!r} {check.tz}"
    assert check.period_s is not None
    return f"every {shown(check.period_s)}"


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(check: Check, state: CheckState, has_token: bool) -> dict[str, Any]:
    """A check as ``list --json`` shows it."""
    return {"name": check.name, "origin": check.origin, "state": state.state,
            "schedule": _schedule(check), "period_s": check.period_s, "cron": check.cron,
            "tz": check.tz, "grace_s": check.grace_s, "severity": check.severity,
            "keys": list(check.keys), "channels": [use.name for use in check.channels],
            "sources": None if check.sources is None else list(check.sources),
            "watchdog": [str(m) for m in check.watchdog], "token": has_token,
            "last_ping_at": _iso(state.last_ping_at), "last_signal": state.last_signal,
            "expected_at": _iso(state.expected_at), "down_at": _iso(state.down_at),
            "since": _iso(state.since), "outages": state.outages}


def _list(catalog: Catalog, store: Heartbeats, as_json: bool) -> int:
    checks = catalog.all()
    tokens = store.with_tokens([check.name for check in checks])
    rows = [row(check, state, check.name in tokens)
            for check, state in zip(checks, store.states(checks), strict=True)]
    gap = store.gap()
    if as_json:
        print(json.dumps({"heartbeats": rows, "relay_gap": {
            key: (_iso(value) if key in ("at", "since") else value)
            for key, value in gap.items()}}, indent=2))
        return 0
    if not rows:
        print("no heartbeat checks (the routes file's heartbeats:, or pd-relay heartbeat add)")
    for found in rows:
        deadline = (f"down since {found['since'] or '-'}" if found["state"] == "down"
                    else f"down at {found['down_at'] or '-'}")
        print(f"{found['name']}  {found['state']}  ({found['origin']}, {found['schedule']}, "
              f"grace {shown(found['grace_s'])})  last ping {found['last_ping_at'] or '-'}"
              f"  due {found['expected_at'] or '-'}  {deadline}")
    note = gap_note(recent_gap(gap, checks, redis_now(store.client)))
    if note:  # as status says it: the last gap while its grace holds, or open now
        print(note)
    return 0
