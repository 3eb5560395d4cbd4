"""What every process of the relay checks before it starts, and how it stops."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import redis

from relay.keyring import register
from relay.memory import memory_problems
from relay.names import Names
from relay.settings import Settings
from relay.store import connect, unless_redis_down

log = logging.getLogger(__name__)


def removed_keys_left_something(settings: Settings, redis_down: int = logging.WARNING) -> bool:
    """Record the configured keys; print every removed key that still has events or open
    incidents, and return True if one does. Redis unreachable: a line at ``redis_down``'s
    level (0: raise), since a process can start before Redis (relay.store)."""
    leftovers = unless_redis_down(
        lambda: register(connect(settings), Names(settings.prefix), settings),
        "keys removed with events left are", redis_down)
    if leftovers is None:
        return False
    for leftover in leftovers:
        print(f"pd-relay: {leftover.problem(settings.keys_file)}", file=sys.stderr)
    return bool(leftovers)


def redis_memory_problems(settings: Settings, level: int) -> bool:
    """Log each problem of Redis's memory settings at ``level``; True when there is one."""
    try:
        problems = memory_problems(connect(settings), settings)
    except redis.RedisError:
        return False  # not reachable: said elsewhere
    for problem in problems:
        log.log(level, "%s", problem)
    return bool(problems)


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process normally: a server's loop ends on SystemExit (waitress
    lets the requests under way finish), and the log lines still batched are written."""

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
