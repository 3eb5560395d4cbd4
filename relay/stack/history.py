"""The history's record in a stack (``RELAY_HISTORY_DSN``): the schema brought up to date
(``pd-relay history migrate``) before any process starts, and with ``RELAY_HISTORY=
postgres`` and no DSN the stack's own PostgreSQL (``relay.stack.postgres``), in its state
directory, on loopback, started before the relay's processes and stopped after them.

The DSN, password and all, reaches the processes in their environments only (the
supervisord section's ``environment=``, the compose override's ``environment:``), never
their command lines: ``ps`` shows those to every user.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from relay.errors import ConfigError
from relay.stack.options import StackOptions, with_settings
from relay.stack.postgres import LocalPostgres
from relay.stack.processes import alive, pd_relay

MIGRATE_TIMEOUT_S = 120


def local_postgres(options: StackOptions) -> LocalPostgres:
    """The stack's own PostgreSQL: its cluster and password in the state directory; as
    root, beside it in the system directory (755), since the server runs as the
    ``postgres`` user, who may not enter the state directory (750, the service user's
    group)."""
    top = options.system_dir if options.user and options.system_dir else options.state_dir
    return LocalPostgres(top / "postgres", options.postgres_port)


def running(local: LocalPostgres) -> bool:
    """Whether the cluster's server runs (its pid file names a live process)."""
    try:
        pid = int((local.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return alive(pid)


def wanted(options: StackOptions, env: dict[str, str]) -> bool:
    """Whether the stack runs its own PostgreSQL: RELAY_HISTORY=postgres and no DSN given,
    or the DSN given is its own (``reload`` hands on the recorded settings: after a
    reboot its server must be started again)."""
    if options.history != "postgres":
        return False
    dsn = env.get("RELAY_HISTORY_DSN")
    if not dsn:
        return True
    local = local_postgres(options)
    return local.password_file.exists() and dsn == local.dsn()


def start_local(options: StackOptions, clock: Callable[[], float] = time.monotonic) -> str:
    """Start the stack's own PostgreSQL unless it runs; return its DSN. The time it took
    is said (made on the first start: initdb)."""
    local = local_postgres(options)
    if not running(local):
        made = (local.data / "PG_VERSION").exists()
        began = clock()
        local.start()
        what = "started" if made else "made and started"
        print(f"pd-relay: PostgreSQL for the history's record {what} in "
              f"{clock() - began:.1f} s ({local.home}, 127.0.0.1:{local.port})", file=sys.stderr)
    return local.dsn()


def stop_local(options: StackOptions) -> None:
    """Stop the stack's own PostgreSQL, if it has one and it runs."""
    if options.history != "postgres":
        return
    local = local_postgres(options)
    if running(local):
        local.stop()
        print("pd-relay: stopped the history's PostgreSQL", file=sys.stderr)


def migrate(env: dict[str, str], run: Callable[..., subprocess.CompletedProcess[str]]
            = subprocess.run) -> None:
    """``pd-relay history migrate`` with the stack's settings (the DSN in its environment);
    ConfigError with its words when it fails (a database a later release migrated, say)."""
    if not env.get("RELAY_HISTORY_DSN"):
        return
    try:
        done = run([*pd_relay(), "history", "migrate"], env=with_settings(env),
                   capture_output=True, text=True, timeout=MIGRATE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError([f"pd-relay history migrate did not finish within "
                           f"{MIGRATE_TIMEOUT_S} s: is PostgreSQL slow or locked?"]) from None
    if done.returncode != 0:
        raise ConfigError(["pd-relay history migrate failed: "
                           + ((done.stderr or "") + (done.stdout or "")).strip()[-2000:]])
    said = (done.stderr or "").strip()
    if said:
        print(said, file=sys.stderr)
