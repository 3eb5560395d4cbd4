"""``pd-relay worker``: deliver one routing key's events to PagerDuty, chosen by id (as
``pd-relay stack`` starts it), name or place in the keys file: never by the key itself,
which ``ps`` would show every user of the machine (``--routing-key`` is refused).
SIGTERM or SIGINT stops it where it stands; the event in flight stays first in line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any

from relay.keys import key_id
from relay.settings import Settings
from relay.startup import removed_keys_left_something, warn_of_redis_link
from relay.store import connect
from worker.delivery import Worker

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("worker", help="deliver one routing key's events to PagerDuty")
    which = worker.add_mutually_exclusive_group(required=True)
    which.add_argument("--routing-key", metavar="KEY", help=argparse.SUPPRESS)  # refused
    which.add_argument("--key", metavar="NAME",
                       help="the key with this name in the keys file (key-N when unnamed)")
    which.add_argument("--key-index", type=int, metavar="N",
                       help="the Nth key of the keys file, counting from 0")
    which.add_argument("--key-id", metavar="ID",
                       help="the key with this id (`pd-relay status` shows ids)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    key = _chosen(settings, args)
    if key is None or removed_keys_left_something(settings):
        return 2
    warn_of_redis_link(settings.redis_url)
    client = connect(settings, block_s=settings.lease_ttl_s + 1)
    worker = Worker(settings, key, client)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        worker.interrupt()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
    return 0


def _chosen(settings: Settings, args: argparse.Namespace) -> str | None:
    """The key the arguments name, or None (said on stderr)."""
    keys = settings.routing_keys
    if args.routing_key is not None:  # never echoed: it is a secret
        print("pd-relay: a routing key on the command line shows in `ps` to every user: "
              "name the key instead, with --key-id ID (`pd-relay status` shows ids) or "
              f"--key NAME (its name in {settings.keys_file})", file=sys.stderr)
        return None
    if args.key is not None:
        by_name = {settings.name_of(k): k for k in keys}
        if args.key in by_name:
            return by_name[args.key]
        print(f"pd-relay: no key named {args.key!r} in {settings.keys_file} (names: "
              f"{', '.join(by_name)})", file=sys.stderr)
        return None
    if args.key_id is not None:
        by_id = {key_id(k): k for k in keys}
        if args.key_id in by_id:
            return by_id[args.key_id]
        print(f"pd-relay: no key with id {args.key_id} in {settings.keys_file}",
              file=sys.stderr)
        return None
    if 0 <= args.key_index < len(keys):
        return keys[int(args.key_index)]
    print(f"pd-relay: --key-index {args.key_index} is out of range: "
          f"{settings.keys_file} holds keys 0 to {len(keys) - 1}", file=sys.stderr)
    return None
