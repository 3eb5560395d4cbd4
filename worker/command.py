"""``pd-relay worker``: deliver routing keys' events to PagerDuty: every key of the keys
file (``--keys all``, as ``pd-relay stack`` starts it), a list of names (``--keys A,B``),
a share of them (``--shard I/N``), or one key by id, name or place: never by the key
itself, which ``ps`` would show every user of the machine (``--routing-key`` is refused).
One process serves them all (``worker.fleet``), one lease per key.
SIGHUP reads the keys file again: new keys are served, removed ones given up.
SIGTERM or SIGINT stops it; an event in flight stays first in line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import fields
from types import FrameType
from typing import Any

from relay.errors import ConfigError
from relay.keys import KEY_RE, key_id, mask
from relay.logs import scrub_also
from relay.settings import Settings
from relay.startup import removed_keys_left_something, warn_of_redis_link
from relay.store import connect
from worker.fleet import Fleet
from worker.served import in_share, parse_share

log = logging.getLogger(__name__)
KEY_FIELDS = {"routing_keys", "draining_keys", "key_names"}


def add_parser(sub: Any) -> None:
    worker = sub.add_parser("worker", help="deliver routing keys' events to PagerDuty")
    which = worker.add_mutually_exclusive_group(required=True)
    which.add_argument("--routing-key", metavar="KEY", help=argparse.SUPPRESS)  # refused
    which.add_argument("--keys", metavar="all|NAME,NAME",
                       help="every key of the keys file (all), or these, by name")
    which.add_argument("--shard", type=_share, metavar="I/N",
                       help="share I of N of the keys (by key id; 1/3, 2/3, 3/3 cover all)")
    which.add_argument("--key", metavar="NAME",
                       help="the key with this name in the keys file (key-N when unnamed)")
    which.add_argument("--key-index", type=int, metavar="N",
                       help="the Nth key of the keys file, counting from 0")
    which.add_argument("--key-id", metavar="ID",
                       help="the key with this id (`pd-relay status` shows ids)")
    worker.add_argument("--prefer", type=_share, metavar="I/N",
                        help="take at once the free leases of share I of N only, the "
                             "others once they stayed free a moment (a standby for them): "
                             "N processes --keys all --prefer 1/N .. N/N share the load")


def command(settings: Settings, args: argparse.Namespace) -> int:
    keys = chosen_keys(settings, args)
    if keys is None or removed_keys_left_something(settings):
        return 2
    warn_of_redis_link(settings.redis_url)
    client = connect(settings)  # no blocking command: the loops park, woken (worker.fleet)
    fleet = Fleet(settings, keys, client, prefer=args.prefer)
    asked = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        fleet.stop()

    def hup(signum: int, frame: FrameType | None) -> None:
        asked.set()

    def reload() -> None:
        if asked.is_set():
            asked.clear()
            reread(fleet, args)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    fleet.run(reload)
    return 1 if fleet.failed else 0  # a failed key loop: any supervisor restarts it


def reread(fleet: Fleet, args: argparse.Namespace) -> bool:
    """SIGHUP: read the settings and the keys file again and serve the keys chosen now.
    Refused (the keys served stay as they were, said in the log) when the settings are
    wrong or a removed key still has events. Other changed settings need a restart."""
    try:
        fresh = Settings.from_env()
    except ConfigError as exc:
        log.error("SIGHUP: the settings are wrong, the keys served stay as they were: %s",
                  exc)
        return False
    keys = chosen_keys(fresh, args)
    if keys is None or removed_keys_left_something(fresh):
        log.error("SIGHUP: the keys served stay as they were (the reason is above)")
        return False
    old = fleet.settings
    changed = [f.name for f in fields(old) if f.name not in KEY_FIELDS
               and getattr(old, f.name) != getattr(fresh, f.name)]
    if changed:
        log.warning("SIGHUP: changed settings (%s) apply once the worker restarts; only "
                    "the keys are read again", ", ".join(changed))
    scrub_also(fresh.routing_keys)  # the logs mask the added keys too (promise 6)
    fleet.set_keys(keys, fresh)
    log.info("SIGHUP: the keys file read again: serving %d key(s)", len(fleet.served))
    return True


def chosen_keys(settings: Settings, args: argparse.Namespace) -> list[str] | None:
    """The keys the arguments name, or None (said on stderr)."""
    if args.shard is not None:
        return [k for k in settings.routing_keys if in_share(key_id(k), args.shard)]
    if args.keys is None:
        key = _chosen(settings, args)
        return None if key is None else [key]
    if args.keys.strip() == "all":
        return list(settings.routing_keys)
    by_name = {settings.name_of(k): k for k in settings.routing_keys}
    names = [name.strip() for name in args.keys.split(",") if name.strip()]
    if any(name in settings.routing_keys for name in names):  # never echoed: a secret
        print("pd-relay: a routing key on the command line shows in `ps` to every user: "
              f"name keys by their names in {settings.keys_file} (--keys NAME,NAME)",
              file=sys.stderr)
        return None
    unknown = [mask(name) if KEY_RE.match(name) else name[:40] for name in names
               if name not in by_name]
    if unknown or not names:
        print(f"pd-relay: --keys names no key of {settings.keys_file}: "
              f"{', '.join(map(repr, unknown)) or 'none given'} (names: "
              f"{', '.join(by_name)}; or --keys all)", file=sys.stderr)
        return None
    return [by_name[name] for name in dict.fromkeys(names)]


def _share(text: str) -> tuple[int, int]:
    """``I/N``: share I (1 to N) of N (``worker.served.parse_share``)."""
    share = parse_share(text)
    if share is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with I from 1 to N (e.g. 1/2)")
    return share


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
