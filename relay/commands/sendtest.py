"""``pd-relay send-test``: a self-resolving test incident through the relay, waited for
(relay/probe.py sends it and reads what PagerDuty answered); with ``--channel`` or
``--all-channels``, a test message to channels instead (relay/channels/probe.py)."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

from relay.keys import choose_key
from relay.names import Names
from relay.probe import send_test
from relay.settings import Settings
from relay.store import connect


def add_parser(sub: Any) -> None:
    probe = sub.add_parser(
        "send-test", help="send a self-resolving test incident through the relay and wait")
    port = os.environ.get("PD_RELAY_PORT") or "8080"
    probe.add_argument("--url", default=f"http://127.0.0.1:{port}",
                       help="the relay's address (default: this machine, PD_RELAY_PORT or 8080)")
    probe.add_argument("--key-index", type=int, metavar="N",
                       help="test this key (default: one of the active keys, at random)")
    probe.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
    channels = probe.add_mutually_exclusive_group()
    channels.add_argument("--channel", action="append", metavar="NAME",
                          help="send a test message to this channel instead (repeatable)")
    channels.add_argument("--all-channels", action="store_true",
                          help="send a test message to every channel of the routes file")


def command(settings: Settings, args: argparse.Namespace) -> int:
    if args.channel or args.all_channels:
        return channels(settings, args)
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


def channels(settings: Settings, args: argparse.Namespace) -> int:
    from relay.channels.probe import send_tests
    from relay.routes.config import load_or_none

    routes = load_or_none(settings.routes_file, settings.key_names)
    defined = {c.name: c for c in routes.channels}
    wanted = list(defined) if args.all_channels else args.channel
    unknown = [name for name in wanted if name not in defined]
    if unknown or not wanted:
        print(f"pd-relay: no channel named {unknown[0]} in the routes file" if unknown else
              "pd-relay: the routes file defines no channels", file=sys.stderr)
        return 2
    ok = send_tests(connect(settings, decode=False), Names(settings.prefix),
                    [defined[name] for name in wanted], args.timeout)
    print("every channel took its test message" if ok else "test FAILED")
    return 0 if ok else 1
