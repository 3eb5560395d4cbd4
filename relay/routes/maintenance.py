"""``pd-relay maintenance add|list|expire``: maintenance windows at run time (kept in
Redis, ``relay.routes.windows``); those of the routes file are listed too."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from relay.names import Names
from relay.routes.config import load
from relay.routes.windows import REFRESH_S, Windows, when
from relay.settings import Settings
from relay.store import connect


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("maintenance", help="add, list or expire maintenance windows")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="hold back triggers matched from START to END")
    add.add_argument("name")
    add.add_argument("--match", action="append", default=[], metavar="MATCHER",
                     help='as in the routes file, e.g. \'source=~"db.*"\' (repeatable)')
    add.add_argument("--start", default="now", help="ISO 8601, 'now' or a delay (30m)")
    add.add_argument("--end", required=True, help="ISO 8601 or a duration from now (2h)")
    add.add_argument("--comment", default="")
    listing = actions.add_parser("list", help="every window, and whether it is active")
    listing.add_argument("--json", action="store_true")
    actions.add_parser("expire", help="end a window now").add_argument("id")


def command(settings: Settings, args: argparse.Namespace) -> int:
    windows = Windows(connect(settings), Names(settings.prefix).maintenance)
    now = time.time()
    if args.action == "add":
        try:
            window_id = windows.add(args.name, args.match, when(args.start, now),
                                    when(args.end, now), args.comment)
        except ValueError as exc:
            print(f"pd-relay: {exc}", file=sys.stderr)
            return 2
        print(f"maintenance window {window_id} added; ingress nodes apply it within "
              f"{REFRESH_S:g}s")
        return 0
    if args.action == "expire":
        if not windows.expire(args.id):
            print(f"pd-relay: no maintenance window {args.id}", file=sys.stderr)
            return 1
        print(f"maintenance window {args.id} expired")
        return 0
    rows = windows.all()
    if settings.routes_file is not None:
        routes = load(settings.routes_file, settings.key_names)
        rows += [{"id": "(routes file)", "name": w.name, "match": [str(m) for m in w.matchers],
                  "start": w.start, "end": w.end, "comment": ""} for w in routes.maintenance]
    if args.json:
        print(json.dumps({"maintenance": rows}, indent=2))
        return 0
    for row in rows:
        state = "active" if row["start"] <= now < row["end"] else (
            "over" if row["end"] <= now else "planned")
        print(f"{row['id']}  {row['name']}  {state}  {_iso(row['start'])} -> "
              f"{_iso(row['end'])}  {' '.join(row['match']) or '(every trigger)'}  "
              f"{row.get('comment', '')}".rstrip())
    if not rows:
        print("no maintenance windows")
    return 0


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
