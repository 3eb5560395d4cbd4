"""The ``pd-relay`` command: reads the settings once, then runs a subcommand (each in its
own module: relay/commands/, worker/command.py, relay/queues.py, relay/routes/, and
``stack``, which reads its settings its own way)."""

from __future__ import annotations

import argparse
import io
import logging
import os
import select
import sys
from typing import Any, TextIO

import redis

from relay import formats, queues
from relay.channels import commands as channels
from relay.channels import worker as channel_worker
from relay.commands import (
    deadletters,
    history,
    ingress,
    operations,
    sendtest,
    storeformat,
    trace,
)
from relay.errors import ConfigError, StoreFormatError
from relay.heartbeats import commands as heartbeats
from relay.logs import configure, printable
from relay.routes import maintenance
from relay.routes.commands import add_routes_parsers, routes_command, token_new
from relay.settings import Settings
from relay.startup import exit_on_sigterm
from worker import command as worker


def main(argv: list[str] | None = None) -> int:
    """``pd-relay``'s exit status. A reader that leaves early (``pd-relay status | head``)
    ends the command quietly, with the status a shell gives a command SIGPIPE ended."""
    try:
        result = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe fails here, not at exit
        return result
    except BrokenPipeError:
        if not _reader_gone():  # another pipe or socket: not ours to hide
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)  # so the flush at exit has nowhere to fail
        os.dup2(devnull, STDOUT)
        return 141


STDOUT = 1


def _reader_gone() -> bool:
    """Whether standard output is a pipe nobody reads any more (poll says POLLERR)."""
    try:
        poller = select.poll()
        poller.register(STDOUT, select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stack"]:  # runs a whole stack: it reads its settings its own way
        from relay.stack.command import main as stack

        return stack(argv[1:])
    args = _parser().parse_args(argv)
    if not isinstance(sys.stdout, Terminal):
        sys.stdout = Terminal(sys.stdout)
    try:
        if args.command == "simulator":
            return _simulator(args)
        if args.command == "token":
            return token_new(args)
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"pd-relay: {exc}", file=sys.stderr)
        return 2
    configure(args.command, settings.log_level, settings.log_format, settings.routing_keys)
    try:
        if args.command in STORED:  # promise 9: refuse formats this release cannot read
            upgrade, redis_down = STORED[args.command]
            if args.command == "check" and args.redis:
                redis_down = 0
            formats.at_start(settings, upgrade, redis_down)
        result: int = COMMANDS[args.command](settings, args)
        return result
    except StoreFormatError as exc:
        print(f"pd-relay: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"pd-relay: cannot reach Redis at {settings.redis_shown}: "
              f"{str(exc).replace(settings.redis_url, settings.redis_shown)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class Terminal(io.TextIOBase):
    """Every ``pd-relay`` command's standard output: each line written through
    ``printable``, so no control character, escape sequence or bidi override that a
    sender or a channel wrote (a dedup_key, a reply) reaches the operator's terminal;
    line breaks are kept. ``raw`` is the stream itself, for the relay's own controls
    (``status --watch`` clearing the screen)."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.raw.write("\n".join(printable(line, sys.maxsize) for line in text.split("\n")))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()


def _simulator(args: argparse.Namespace) -> int:
    from simulator.pagerduty import serve

    configure("simulator", "INFO", "text")
    faults: dict[str, Any] = {"limit": args.limit, "window_s": args.window_s}
    exit_on_sigterm()
    try:
        serve(args.host, args.port, **faults)
    except KeyboardInterrupt:
        pass
    return 0


COMMANDS = {
    "check": operations.check, "status": operations.status,
    "forget-key": operations.forget_key, "ingress": ingress.command, "worker": worker.command,
    "routes": routes_command, "maintenance": maintenance.command, "queue": queues.command,
    "dead-letters": deadletters.command, "send-test": sendtest.command,
    "channel-worker": channel_worker.command, "channels": channels.command,
    "trace": trace.command, "format": storeformat.command, "heartbeat": heartbeats.command,
    "history": history.command, "history-exporter": history.exporter,
}
# The commands that reach Redis, and what they do with the stored formats' version before
# they start (relay.formats): upgrade it (else only read it), and how loud Redis being
# down is (0: an error; the long-running processes may start before Redis). Each refuses
# a version it cannot read. `format` reads it itself (it shows any).
STORED = {
    "ingress": (True, logging.WARNING), "worker": (True, logging.WARNING),
    "channel-worker": (True, logging.WARNING), "check": (False, logging.INFO),
    "status": (False, 0), "trace": (False, 0), "forget-key": (True, 0),
    "queue": (True, 0), "dead-letters": (True, 0), "send-test": (True, 0),
    "channels": (True, 0), "maintenance": (True, 0), "heartbeat": (True, 0),
    "history-exporter": (False, logging.WARNING),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pd-relay",
        description="Queue-buffered relay to the PagerDuty Events API v2. "
        "Settings come from RELAY_* environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    operations.add_parsers(sub)
    ingress.add_parser(sub)
    worker.add_parser(sub)
    channel_worker.add_parser(sub)
    channels.add_parser(sub)
    deadletters.add_parser(sub)
    sendtest.add_parser(sub)
    trace.add_parser(sub)
    storeformat.add_parser(sub)
    history.add_parser(sub)
    sub.add_parser("stack", add_help=False,
                   help="run a whole stack: pd-relay stack up|down|status|reload|logs|relay")
    add_routes_parsers(sub)
    maintenance.add_parser(sub)
    heartbeats.add_parser(sub)
    queues.add_parser(sub)
    sim = sub.add_parser("simulator", help="run the PagerDuty stand-in (tests, demo)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--limit", type=int, default=120, help="calls per key per window")
    sim.add_argument("--window-s", type=float, default=60.0)
    return parser


if __name__ == "__main__":
    sys.exit(main())
