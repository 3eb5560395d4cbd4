"""``pd-relay format``: the stored formats' version (relay.formats), and marking it for a
rollback to an older release (README, "Upgrading")."""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
from typing import Any

from relay import formats
from relay.keyring import known_keys
from relay.names import Names
from relay.settings import Settings
from relay.store import connect
from worker.purge import strip_arrival_gaps

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "format", help="show the version of what Redis stores; --rollback-to marks it for "
        "a rollback to an older release")
    parser.add_argument("--rollback-to", type=int, metavar="VERSION",
                        help="mark the store as VERSION (1: v0.1.0, 2: v0.2.0) just before "
                        "rolling back to it")
    parser.add_argument("--yes", action="store_true", help="do it (else: say what it does)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    client, names = connect(settings), Names(settings.prefix)
    found = formats.stored(client, names)
    shown = formats.named(found) if found else "none (a fresh store)"
    if args.rollback_to is None:
        print(f"stored formats: version {shown}; this release writes version "
              f"{formats.FORMAT} and reads versions {formats.READS} to {formats.FORMAT}")
        return 0 if found == 0 or formats.READS <= found <= formats.FORMAT else 2
    if not args.yes:
        print(f"stored formats: version {shown}. Just before a rollback, this marks it "
              f"as version {formats.named(args.rollback_to)}, so that the next upgrade "
              "redoes its migration (a process of this release that starts later upgrades "
              "it again): run again with --yes")
        return 0
    formats.rollback(client, names, args.rollback_to)
    gaps = strip_arrival_gaps(client, names, list(known_keys(client, names)))
    if gaps:  # v0.1.0 would take a purge's gap in its arrival list for an event
        print(f"took {gaps} gap(s) a purge left out of the keys' arrival lists")
    log.warning("stored formats marked as version %d (was %s) for a rollback, by %s@%s",
                args.rollback_to, shown, getpass.getuser(), socket.gethostname())
    print(f"stored formats marked as version {formats.named(args.rollback_to)} (was {shown})")
    return 0
