"""``pd-relay trace DEDUP_KEY``: where is my alert? Each event of the incident with its
story (relay/history.py): accepted, each attempt, and its end. With RELAY_HISTORY_DSN, from
the record in PostgreSQL and the stream's tail (relay.history.pg.stories); PostgreSQL not
answering, it says so and shows what the stream still holds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from relay.errors import RecordDown
from relay.heartbeats.model import DEDUP_PREFIX, Check
from relay.heartbeats.store import Heartbeats
from relay.history.pg.stories import Finder
from relay.history.search import Query
from relay.history.story import key_name
from relay.logs import printable
from relay.names import Names
from relay.settings import Settings
from relay.store import connect
from relay.ui.api import since


def add_parser(sub: Any) -> None:
    trace = sub.add_parser("trace", help="an incident's events and what became of each "
                           "(accepted, attempts, delivered or dead-lettered)")
    trace.add_argument("dedup_key", metavar="DEDUP_KEY")
    trace.add_argument("--json", action="store_true")
    trace.add_argument("--since", help="only events accepted at or after an age (2h, 7d) or "
                       "a time (ISO 8601)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    client, names = connect(settings), Names(settings.prefix)
    finder = Finder(settings, client)
    since_ms = None
    if getattr(args, "since", None):
        since_ms = since(args.since, time.time())
        if since_ms is None:
            print("--since: want a time (ISO 8601, e.g. 2026-12-01T08:00:00Z) or an age "
                  "(90s, 15m, 2h, 7d)", file=sys.stderr)
            return 2
    query = Query(dedup_key=args.dedup_key, limit=0, since_ms=since_ms)
    try:
        found = finder.search(query)
        if found.incomplete:
            print(f"some events may be missing: {found.incomplete}", file=sys.stderr)
        stories = found[::-1]  # oldest first
    except RecordDown as exc:
        print(f"the history's record in PostgreSQL does not answer ({exc}): "
              "showing only what the stream still holds (its last entries)", file=sys.stderr)
        stories = finder.stream(query)[::-1]
    finally:
        if finder.record is not None:
            finder.record.close()
    if args.json:
        print(json.dumps([s.as_json(settings.key_names) for s in stories], indent=2))
        return 0 if stories else 1
    now = heartbeat_now(client, names, args.dedup_key[len(DEDUP_PREFIX):]) \
        if args.dedup_key.startswith(DEDUP_PREFIX) else ""
    if now:
        print(printable(now, 500) + "\n")
    if not stories:
        print(f"no event with dedup_key {printable(args.dedup_key, 100)} in the last "
              f"{settings.history_days:g} days (RELAY_HISTORY_DAYS) of history", file=sys.stderr)
        return 1
    print(f"dedup_key {printable(args.dedup_key, 100)}: {len(stories)} event(s)")
    for story in stories:
        first = story.steps[0] if story.steps else {}
        print(f"\nevent {story.id}: {first.get('a', '?')}, "
              f"{story.end or 'under way'}")
        facts = story.facts(settings.key_names)
        if facts.get("summary") is not None:
            print(printable(f"  {facts.get('severity') or '-'}: {facts['summary']}", 300))
        started = first.get("at_ms", 0)
        for step in story.steps:
            print(f"  {_when(step['at_ms'])}  {step['step']:<9} "
                  f"{_what(step, started, settings.key_names)}")
    return 0


def heartbeat_now(client: Any, names: Names, name: str) -> str:
    """Where a heartbeat's check is now (its page may not be an event yet: it waits in
    the outbox while its key's queue is full); "" for a check Redis knows nothing of."""
    if not client.exists(names.heartbeat(name)):
        return ""
    store = Heartbeats(client, names)
    [now] = store.states([Check(name, 0.0)])
    text = f"check {name}: {now.state}"
    if now.since is not None:
        text += f" since {_when(int(now.since * 1000))}"
    last = store.recent_pings(name, 1)
    if last:
        status = last[0].get("exit_status")
        text += (f"; last ping {_when(int(last[0]['at'] * 1000))} ({last[0].get('signal')}"
                 + (f", exit status {status})" if status is not None else ")"))
    waiting = [page.action for _raw, page in store.pages(100) if page.name == name]
    if waiting:
        text += (f"; {len(waiting)} page{'s' if len(waiting) > 1 else ''} waiting to be "
                 f"stored ({', '.join(waiting)})")
    return text


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _what(step: dict[str, Any], started: int, keys: tuple[str, ...]) -> str:
    kind = step["step"]
    if kind == "accepted":
        where = f"held back ({step.get('h') or 'held'}) by {step.get('r')}" \
            if not step.get("slot") else \
            f"queued for key {key_name(keys, int(step['slot']))}, route {step.get('r')}"
        why = f"\n{'':37}{printable(step['hb'], 300)}" if step.get("hb") else ""  # heartbeat
        return printable(f"{where}, from {step.get('s')} ({step.get('ad', '?')}) on "
                         f"{step.get('n')}, client {step.get('c') or '-'}", 300) + why
    after = f"after {(step['at_ms'] - started) / 1000:.2f} s"
    if kind == "attempt":
        return printable(f"{step.get('o')}: {step.get('e')} {step.get('r') or ''} "
                         f"(key {step.get('k')}); next in {step.get('w')} s", 300)
    if kind == "delivered":
        return printable(f"to key {step.get('k')} {after}: {step.get('r') or ''}", 300)
    if kind == "dead":
        return printable(f"{step.get('e')} {step.get('r') or ''} {after}; dead letter "
                         f"{step.get('dl')}", 300)
    if kind == "coalesced":
        return printable(f"merged {after} into {step.get('into')}, a newer trigger of its "
                         f"incident, while it waited for key {step.get('k')}", 300)
    return printable(json.dumps(step), 300)

