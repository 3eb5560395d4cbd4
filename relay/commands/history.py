"""``pd-relay history ...``: the history's record in PostgreSQL (relay.history.pg).

    export   the record's events as CSV or JSON lines (relay/commands/history_export.py)
"""

from __future__ import annotations

import argparse
from typing import Any

from relay.commands import history_export
from relay.settings import Settings


def add_parser(sub: Any) -> None:
    history = sub.add_parser("history", help="the history's record in PostgreSQL "
                             "(RELAY_HISTORY_DSN): export")
    actions = history.add_subparsers(dest="action", required=True)
    history_export.add_parser(actions)


def command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "export":
        return history_export.command(settings, args)
    raise AssertionError(args.action)
