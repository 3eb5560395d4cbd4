"""``pd-relay queue show|purge KEY``: look into a key's queue, and take junk out of it.

A flood of junk ahead of real pages costs every page behind it the time PagerDuty takes
to swallow the junk (120 a minute per key). ``purge`` removes the queued events that
match (never the one in flight), keeping the rest in order, with a script that also runs
when Redis is full (``worker.purge``: a call looks for at most ``PURGED_PER_CALL``
events, each at the place it was read at). Without ``--yes`` it only says what it would
remove; with it, it logs a WARNING naming the key, the matchers, the count and who ran
it.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import redis

from relay.keys import key_id
from relay.logs import printable
from relay.names import Names
from relay.routes.matchers import Matcher, parse
from relay.settings import Settings
from relay.store import Record, connect, is_gap
from worker.purge import LOST, PURGE, PURGED_BYTES_PER_CALL, PURGED_PER_CALL, READ, READ_PER_CALL

log = logging.getLogger(__name__)
SHOWN = 20  # events listed by default


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("queue", help="show a key's queued events, or purge junk")
    actions = parser.add_subparsers(dest="action", required=True)
    for name, text in (("show", "list a key's queued events, oldest first"),
                       ("purge", "remove a key's queued events that match (dry run "
                                 "unless --yes)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("key", help="the key's name, or its id (see status)")
        action.add_argument("--match", action="append", default=[], metavar="MATCHER",
                            help='as in the routes file, e.g. \'severity="info"\' '
                                 "(repeatable: all must hold)")
    show = actions.choices["show"]
    show.add_argument("--limit", type=int, default=SHOWN, help=f"at most (default {SHOWN})")
    purge = actions.choices["purge"]
    purge.add_argument("--all", action="store_true", help="every queued event of the key")
    purge.add_argument("--yes", action="store_true", help="remove them (else: a dry run)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    key = _key(settings, args.key)
    try:
        matchers = [parse(text) for text in args.match]
    except ValueError as exc:
        print(f"pd-relay: {exc}", file=sys.stderr)
        return 2
    if key is None:
        print(f"pd-relay: no key {printable(args.key, 100)} in {settings.keys_file} "
              "(give its name or id, as status shows them)", file=sys.stderr)
        return 2
    client = connect(settings)
    names = Names(settings.prefix)
    kid, label = key_id(key), settings.name_of(key)
    if args.action == "show":
        shown = total = 0
        for _, _, raw in _queued(client, names, kid):
            total += 1
            if shown < args.limit and _matches(raw, matchers):
                print(_line(raw))
                shown += 1
        print(f"{shown} shown of {total} queued for key {label}")
        return 0
    if not matchers and not args.all:
        print("pd-relay: say which events: --match MATCHER (repeatable), or --all",
              file=sys.stderr)
        return 2
    doomed = [(name, place, raw) for name, place, raw in _queued(client, names, kid)
              if _matches(raw, matchers)]
    what = " ".join(str(m) for m in matchers) or "every event"
    if not args.yes:
        for _, _, raw in doomed[:SHOWN]:
            print(_line(raw))
        print(f"would remove {len(doomed)} queued event(s) of key {label} matching "
              f"{printable(what, 500)}: run again with --yes to remove them")
        return 0
    removed, purge = 0, client.register_script(PURGE)
    for name, lost in zip(names.waiting(kid), LOST, strict=True):
        lane = name != names.queue(kid)
        found = [(place, raw) for where, place, raw in doomed if where == name]
        for chunk in _calls(found):
            pairs: list[int | str] = [part for place, raw in chunk for part in (place, raw)]
            removed += int(purge(keys=[name, names.stats(kid), names.pending(kid),
                                       names.queued_bytes],
                                 args=[lost, int(lane), *pairs]))
    log.warning("purged %d queued event(s) of key %s matching %s, by %s@%s", removed, label,
                printable(what, 500), getpass.getuser(), socket.gethostname())
    print(f"removed {removed} queued event(s) of key {label}"
          + (f" ({len(doomed) - removed} had left the queue meanwhile)"
             if removed < len(doomed) else ""))
    return 0


def _calls(found: list[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    """The events to purge, in calls of at most PURGED_PER_CALL events and (past the
    first) PURGED_BYTES_PER_CALL bytes: each call's work is bounded (worker.purge)."""
    chunk: list[tuple[int, str]] = []
    size = 0
    for place, raw in found:
        if chunk and (len(chunk) >= PURGED_PER_CALL or size + len(raw) > PURGED_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append((place, raw))
        size += len(raw)
    if chunk:
        yield chunk


def _key(settings: Settings, given: str) -> str | None:
    """The routing key named by its name or its id."""
    for key in settings.routing_keys:
        if given in (settings.name_of(key), key_id(key)):
            return key
    return None


def _queued(client: redis.Redis, names: Names, kid: str) -> Iterator[tuple[str, int, str]]:
    """The key's waiting events about in the order they leave (the lanes, then what has
    not been sorted yet), each with its list and its place there (worker.purge), read in
    chunks. An event sorted into a lane while the read goes on may be missed or seen
    twice; the purge removes what is still at its place."""
    read: Any = client.register_script(READ)
    for name, lost in zip(names.waiting(kid), LOST, strict=True):
        place = 0
        while True:
            place, chunk = read(keys=[name, names.pending(kid)],
                                args=[lost, place, READ_PER_CALL])
            place = int(place)
            if not chunk:
                break
            yield from ((name, place + n, str(raw)) for n, raw in enumerate(chunk)
                        if not is_gap(str(raw)))
            place += len(chunk)


def _matches(raw: str, matchers: list[Matcher]) -> bool:
    try:
        event = Record.decode(raw).event
    except (ValueError, KeyError, TypeError):
        return not matchers  # unreadable: only --all takes it
    return all(matcher.holds(event, {}) for matcher in matchers)


def _line(raw: str) -> str:
    try:
        record = Record.decode(raw)
    except (ValueError, KeyError, TypeError):
        return printable(f"(unreadable) {raw}", 300)
    payload = record.event.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    return printable(f"{record.accepted_ms}  {record.action}  "
                     f"dedup_key={record.event.get('dedup_key')}  "
                     f"severity={payload.get('severity')}  source={payload.get('source')}  "
                     f"{payload.get('summary')}", 300)
