"""``pd-relay stack up [--demo] | down | status | reload | logs [PROCESS] | relay ARGS``:
one way to run a whole stack (``start.sh`` is a bootstrap in front of it)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from relay.errors import ConfigError
from relay.stack import account
from relay.stack.compose import ComposeStack
from relay.stack.hosts import up_without_relay
from relay.stack.native import NativeStack
from relay.stack.options import StackOptions, home_dir, with_settings
from relay.stack.processes import pd_relay
from relay.stack.record import Recorded
from relay.stack.report import public_url
from relay.stack.roles import ROLES, Roles
from relay.stack.tls import demo_pair
from relay.stack.up import apply, demo_keys


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    os.umask(0o077)  # run/, data/, logs, the AOF, demo keys: for this user only
    try:
        result: int = ACTIONS[args.action](args, home_dir())
        return result
    except ConfigError as exc:
        print(f"pd-relay: cannot {args.action}: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, AssertionError, subprocess.CalledProcessError) as exc:
        print(f"pd-relay: {args.action} failed: {exc}", file=sys.stderr)
        return 1


def _down(args: argparse.Namespace, home: Path) -> int:
    run_dir = _run_dir(home)
    earlier = Recorded.load(home / "run") if os.geteuid() == 0 else None
    stopped = earlier is not None and earlier.options.run_dir != run_dir \
        and earlier.mode == "native" and NativeStack(earlier.options).supervisor.running()
    if earlier is not None and stopped:
        # a stack an earlier release started as root, from the project's run/: its data
        # moves to the system directory at the next start (relay/stack/account.py)
        print(f"pd-relay: stopping the stack an earlier release started from {home / 'run'}",
              file=sys.stderr)
        NativeStack(earlier.options).down()
    recorded = Recorded.load(_state_dir(home))
    if recorded is None:
        if not stopped:
            print("pd-relay: nothing to stop")
        return 0
    if recorded.mode == "docker":
        return ComposeStack(recorded.options).down()
    return NativeStack(recorded.options).down()


def _status(args: argparse.Namespace, home: Path) -> int:
    recorded = _recorded(home)
    if recorded is None:
        return 3
    if getattr(args, "json", False):  # the relay's JSON alone: no process table before it
        if not recorded.options.roles.relay:
            print("pd-relay: this host runs no relay (its roles: "
                  f"{', '.join(recorded.options.roles.roles)}): no status --json",
                  file=sys.stderr)
            return 2
        return _relay(argparse.Namespace(args=["status", "--json"]), home)
    if recorded.mode == "docker":
        ComposeStack(recorded.options).status()
    elif not NativeStack(recorded.options).status():
        return 3
    if not recorded.options.roles.relay:  # a Redis or Sentinel host: no relay to ask
        return 0
    return _relay(argparse.Namespace(args=["status"]), home)


def _relay(args: argparse.Namespace, home: Path) -> int:
    recorded = _recorded(home)
    if recorded is None:
        return 3
    if recorded.mode == "docker":
        argv = ComposeStack(recorded.options).exec_argv(args.args)
        return subprocess.run(argv).returncode
    argv, env = list(args.args), with_settings(recorded.relay_env)
    if argv[:1] == ["send-test"] and not any(a.startswith("--url") for a in argv):
        argv += ["--url", public_url(recorded.options)]
    if recorded.options.demo_tls:  # the demo's self-signed certificate is its own CA
        env["REQUESTS_CA_BUNDLE"] = str(recorded.options.tls_cert)
    return subprocess.run([*pd_relay(), *argv], env=env).returncode


def _logs(args: argparse.Namespace, home: Path) -> int:
    recorded = _recorded(home)
    if recorded is None:
        return 3
    if recorded.mode == "docker":
        argv = ComposeStack(recorded.options).logs_argv(args.process, args.lines, args.follow)
    else:
        files = NativeStack(recorded.options).log_files(args.process)
        if not files:
            known = sorted(p.stem for p in (recorded.options.supervisor_dir / "logs").glob("*.log"))
            print(f"pd-relay: no log for {args.process}; there are: {', '.join(known)}",
                  file=sys.stderr)
            return 2
        argv = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []),
                *map(str, files)]
    try:
        return subprocess.run(argv).returncode
    except KeyboardInterrupt:
        return 0


def _run_dir(home: Path) -> Path:
    return StackOptions.from_env(os.environ, home).run_dir


def _state_dir(home: Path) -> Path:
    """Where the stack's record is (``StackOptions.state_dir``)."""
    return StackOptions.from_env(os.environ, home).state_dir


def _recorded(home: Path) -> Recorded | None:
    recorded = Recorded.load(_state_dir(home))
    if recorded is None:
        print("pd-relay: no stack was started here: run ./start.sh (or pd-relay stack up) "
              "first", file=sys.stderr)
    return recorded


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pd-relay stack", description="Run a whole pd-relay stack: Redis, ingress "
        "nodes, worker processes (PD_RELAY_WORKER_PROCESSES, each serving every routing "
        "key) and nginx, under supervisord (native) or docker "
        "compose. Options come from PD_RELAY_* and RELAY_* environment variables (README).")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="start the stack, or apply every change to the running "
                        "one (restarting what changed, one process at a time)")
    up.add_argument("--demo", action="store_true",
                    help="against the bundled PagerDuty simulator, with generated keys")
    hosts = up.add_argument_group(
        "several hosts", "what this host plays (README: Running on several machines); "
        "without --role: the whole stack with its own Redis, as ever")
    hosts.add_argument("--role", action="append", default=[], choices=ROLES,
                       help="repeat for each role this host plays")
    hosts.add_argument("--announce", default="", metavar="ADDRESS",
                       help="this host's address: Redis and Sentinel listen on it")
    hosts.add_argument("--primary", default="", metavar="HOST:PORT",
                       help="redis-replica: the first primary")
    hosts.add_argument("--monitor", default="", metavar="HOST:PORT",
                       help="sentinel: the first primary it watches")
    hosts.add_argument("--quorum", type=int, default=2,
                       help="sentinel: how many Sentinels must agree a primary is down")
    hosts.add_argument("--service", default="mymaster",
                       help="sentinel: the primary's name (the URL's service)")
    hosts.add_argument("--redis-port", type=int, default=6379)
    hosts.add_argument("--sentinel-port", type=int, default=26379)
    sub.add_parser("down", help="stop everything the stack started")
    status = sub.add_parser("status", help="its processes, and each key's queue and "
                            "deliveries")
    status.add_argument("--json", action="store_true",
                        help="only the relay's `pd-relay status --json`, for scripts")
    sub.add_parser("reload", help="apply a changed keys file with the recorded settings")
    logs = sub.add_parser("logs", help="the last lines of the logs (one process's, or all)")
    logs.add_argument("process", nargs="?", metavar="PROCESS")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    relay = sub.add_parser("relay", help="run `pd-relay ARGS` against the running stack")
    relay.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    return parser


def _up(args: argparse.Namespace, home: Path) -> int:
    options = StackOptions.from_env(os.environ, home, demo=args.demo)
    if args.role:
        roles = Roles.parse(args.role, args.announce, args.redis_port, args.sentinel_port,
                            args.primary, args.monitor, args.quorum, args.service)
        if args.demo:
            raise ConfigError(["--role and --demo: the demo runs on one host"])
        options = replace(options, roles=roles)
        if not roles.relay:
            if options.system_dir:
                account.make_system_dir(options.system_dir)
            up_without_relay(options, os.environ)
            return 0
    if options.system_dir:  # as root: the 0755 directory of run/, data/ and the venv
        account.make_system_dir(options.system_dir)
    if args.demo:
        demo_keys(options.keys_file, [options.run_dir / "demo-keys.txt",
                                      options.home / "run" / "demo-keys.txt"])
        pair = None if options.tls else demo_pair(options.state_dir / "tls")
        if pair:
            options = replace(options, tls_cert=pair[0], tls_key=pair[1])
    return apply(options, os.environ, Recorded.load(options.state_dir))


def _reload(args: argparse.Namespace, home: Path) -> int:
    """Apply the keys file (and any other changed file) with the recorded settings."""
    recorded = _recorded(home)
    if recorded is None:
        return 3
    if not recorded.options.roles.relay:
        print("pd-relay: this host runs no relay (its roles: "
              f"{', '.join(recorded.options.roles.roles)}), so no keys file to reload; to "
              "change its Redis or Sentinel, run ./start.sh --role ... again", file=sys.stderr)
        return 2
    return apply(recorded.options, recorded.relay_env, recorded)


ACTIONS = {"up": _up, "down": _down, "status": _status, "reload": _reload, "logs": _logs,
           "relay": _relay}
