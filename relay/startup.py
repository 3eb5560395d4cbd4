"""What every process of the relay checks before it starts, and how it stops."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from urllib.parse import parse_qsl, urlsplit

import redis

from relay.http import loopback_host
from relay.keyring import register
from relay.memory import memory_problems
from relay.names import Names
from relay.sentinel import is_sentinel
from relay.sentinel import parse as parse_sentinel
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


def redis_link_problems(url: str) -> list[str]:
    """What is wrong with reaching Redis at ``url`` across a network: plain TCP (events,
    routing keys and the password in the clear) and no password. A Unix socket and
    loopback say nothing: the stack's own Redis is on a private socket."""
    if is_sentinel(url):
        return _sentinel_link_problems(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or loopback_host(parts.hostname or "localhost"):
        return []
    query = {k.lower(): v for k, v in parse_qsl(parts.query)}  # redis-py reads these too
    where = f"Redis at {parts.hostname}"
    problems = []
    if parts.scheme == "redis":
        problems.append(f"{where} is reached over plain TCP: events, routing keys and its "
                        "password cross the network in the clear; use rediss:// (TLS)")
    elif query.get("ssl_cert_reqs", "required").lower() in ("none", "optional"):
        problems.append(f"{where} is reached over TLS without checking its certificate "
                        "(ssl_cert_reqs): anyone in the path can stand in for it and "
                        "receive its password and every event")
    if not parts.password and not query.get("password"):
        problems.append(f"{where} takes no password: anyone who reaches it reads and "
                        "changes the queues; set one (requirepass, or an ACL user)")
    return problems


def _sentinel_link_problems(url: str) -> list[str]:
    """A ``redis+sentinel://`` URL: redis-py reaches the Sentinels and the data nodes over
    plain TCP (the URL takes no TLS), so hosts beyond loopback are named."""
    found = parse_sentinel(url)
    far = [host for host, _ in found.hosts if not loopback_host(host)]
    if not far:
        return []
    where = f"Redis through the Sentinels at {', '.join(far)}"
    problems = [f"{where} is reached over plain TCP: events, routing keys and the "
                "passwords cross the network in the clear; keep the Redis nodes and "
                "Sentinels on a private network (or a TLS tunnel)"]
    if not found.password:
        problems.append(f"{where} takes no password: anyone who reaches it reads and "
                        "changes the queues; set one (requirepass, or an ACL user)")
    return problems


def warn_of_redis_link(url: str) -> bool:
    """Log each of ``redis_link_problems`` as a WARNING; True when there is one."""
    problems = redis_link_problems(url)
    for problem in problems:
        log.warning("%s", problem)
    return bool(problems)


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process normally: a server's loop ends on SystemExit (waitress
    lets the requests under way finish), and the log lines still batched are written."""

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
