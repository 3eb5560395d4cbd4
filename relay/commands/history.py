"""``pd-relay history migrate`` (the record's schema in PostgreSQL: relay.history.pg.migrate)
and ``pd-relay history-exporter`` (the process that writes the record:
relay.history.pg.exporter). Both need RELAY_HISTORY_DSN. The ``history`` group holds the
record's commands: ``export`` (relay/commands/history_export.py) too."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from relay.commands import history_export
from relay.errors import RecordDown, RecordFormatError
from relay.history.pg import SCHEMA_VERSION
from relay.history.pg.connect import connect as pg_connect
from relay.history.pg.exporter import Exporter, Tuning, consumer_name
from relay.history.pg.migrate import migrate, version
from relay.settings import Settings
from relay.startup import exit_on_sigterm
from relay.store import connect

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> Any:
    """The ``history`` group and ``history-exporter``; returns the group's subparsers (for
    the commands other modules add to it)."""
    history = sub.add_parser("history", help="the record of every event in PostgreSQL "
                             "(RELAY_HISTORY_DSN): migrate its schema, export it")
    actions = history.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("migrate", help="make or bring up to date the record's schema")
    history_export.add_parser(actions)
    tuning = Tuning()
    exporter = sub.add_parser("history-exporter", help="write the history stream's steps to "
                              "PostgreSQL (RELAY_HISTORY_DSN): several may run")
    exporter.add_argument("--name", default=None,
                          help="this exporter's name in the group (default: host-pid)")
    exporter.add_argument("--batch", type=int, default=tuning.batch,
                          help="entries per batch at most (default %(default)s)")
    exporter.add_argument("--claim-idle-s", type=float, default=tuning.claim_idle_ms / 1000,
                          help="claim entries another exporter held this long (default "
                               "%(default)s)")
    return actions


def command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "export":
        return history_export.command(settings, args)
    if not settings.history_dsn:
        print("pd-relay: RELAY_HISTORY_DSN is not set: no record in PostgreSQL to migrate")
        return 2
    if args.action == "migrate":
        return _migrate(settings)
    return 2  # pragma: no cover - argparse allows only the actions above


def _migrate(settings: Settings) -> int:
    try:
        with pg_connect(settings.history_dsn, autocommit=True) as conn:
            before = version(conn)
            applied = migrate(conn)
    except (RecordDown, RecordFormatError) as exc:
        print(f"pd-relay: {exc}")
        return 1 if isinstance(exc, RecordDown) else 2
    if applied:
        print(f"history record at {settings.history_dsn_shown}: schema version {before} -> "
              f"{applied[-1].version} ({', '.join(m.name for m in applied)})")
    else:
        print(f"history record at {settings.history_dsn_shown}: schema version "
              f"{SCHEMA_VERSION}, up to date")
    return 0


def exporter(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.history_dsn:
        print("pd-relay: RELAY_HISTORY_DSN is not set: nowhere to export the history to")
        return 2
    exit_on_sigterm()
    tuning = Tuning(batch=max(1, args.batch), claim_idle_ms=int(args.claim_idle_s * 1000))
    name = args.name or consumer_name()
    found = Exporter(connect(settings, block_s=tuning.block_ms / 1000), settings, name, tuning)
    log.info("history exporter %s: the history stream's steps to %s", name,
             settings.history_dsn_shown)
    try:
        found.run()
    except RecordFormatError as exc:
        print(f"pd-relay: {exc}")
        return 2
    finally:
        found.close()
    return 0
