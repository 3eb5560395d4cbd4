"""``pd-relay dead-letters list|show|replay|purge``: the events PagerDuty refused for good
(relay/deadletters.py keeps them)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from relay.deadletters import DeadLetters
from relay.logs import printable
from relay.names import Names
from relay.settings import Settings
from relay.store import connect


def add_parser(sub: Any) -> None:
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


def command(settings: Settings, args: argparse.Namespace) -> int:
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
