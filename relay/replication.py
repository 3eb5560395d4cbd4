"""What ``status`` and ``check`` say of Redis's replication: which primary, how many
replicas are in sync of those it knows, each one's lag (bytes of the primary's stream
it has not confirmed, and seconds since it last did), and under Sentinel how many
Sentinels answer and their quorum."""

from __future__ import annotations

import logging
from typing import Any

import redis

from relay.sentinel import is_sentinel, parse, sentinel_for
from relay.settings import Settings

log = logging.getLogger(__name__)

MAX_LAG_S = 10  # the stack's min-replicas-max-lag: a replica silent longer is not in sync


def read_replication(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """The replication's figures (``summarize``), read from the primary (and the
    Sentinels of a ``redis+sentinel://`` URL)."""
    try:
        info = client.info("replication")
    except redis.exceptions.ResponseError as exc:  # INFO refused (an ACL, a renamed command)
        log.debug("INFO replication refused: %s", exc)
        figures = summarize({}, primary_address(client), sentinel_view(settings),
                            settings.min_replicas)
        figures.update(readable=False, enough=True)  # unknown: not a failure of check
        return figures
    return summarize(info, primary_address(client), sentinel_view(settings),
                     settings.min_replicas)


def summarize(info: dict[str, Any], primary: str, sentinels: dict[str, Any] | None,
              min_replicas: int) -> dict[str, Any]:
    """The figures from the primary's ``INFO replication``: a replica is in sync when
    its link is up (online) and it confirmed within MAX_LAG_S seconds."""
    offset = int(info.get("master_repl_offset", 0))
    replicas = []
    for name, value in sorted(info.items()):
        if not (name.startswith("slave") and name[5:].isdigit() and isinstance(value, dict)):
            continue
        lag_s = int(value.get("lag", -1))
        state = str(value.get("state", ""))
        replicas.append({
            "address": f"{value.get('ip')}:{value.get('port')}",
            "state": state,
            "lag_bytes": max(0, offset - int(value.get("offset", 0))),
            "lag_seconds": lag_s,
            "in_sync": state == "online" and 0 <= lag_s <= MAX_LAG_S,
        })
    in_sync = sum(1 for replica in replicas if replica["in_sync"])
    return {"primary": primary, "role": str(info.get("role", "")),
            "replicas_known": len(replicas), "replicas_in_sync": in_sync,
            "min_replicas": min_replicas, "enough": in_sync >= min_replicas, "readable": True,
            "replicas": replicas, "sentinels": sentinels}


def primary_address(client: redis.Redis) -> str:
    pool: Any = client.connection_pool
    if hasattr(pool, "get_master_address"):
        host, port = pool.get_master_address()
        return f"{host}:{port}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"


def sentinel_view(settings: Settings) -> dict[str, Any] | None:
    """How many of the URL's Sentinels answer, how many each knows (itself and the
    others), and the quorum; None for a plain URL."""
    if not is_sentinel(settings.redis_url):
        return None
    found = parse(settings.redis_url)
    sentinels = sentinel_for(settings.redis_url, settings.sentinel_password,
                             settings.redis_timeout_s)
    answering, known, quorum = 0, 0, 0
    for node in sentinels.sentinels:
        try:
            state: Any = node.sentinel_master(found.service)
        except redis.RedisError as exc:
            log.debug("a Sentinel does not answer: %s", type(exc).__name__)
            continue
        answering += 1
        known = max(known, int(state.get("num-other-sentinels", 0)) + 1)
        quorum = int(state.get("quorum", 0))
    return {"service": found.service, "named": len(found.hosts), "answering": answering,
            "known": known, "quorum": quorum}


def format_replication(figures: dict[str, Any]) -> str:
    """Lines for ``status`` and ``check``."""
    head = f"Redis primary {figures['primary']}"
    view = figures["sentinels"]
    if view:
        head += (f" (service {view['service']}: {view['answering']} of {view['named']} "
                 f"Sentinels answer, {view['known']} known, quorum {view['quorum']})")
    if not figures["readable"]:
        return f"{head}: its replication is unknown (INFO refused)"
    lines = [f"{head}: {figures['replicas_in_sync']} of {figures['replicas_known']} "
             f"replica(s) in sync, RELAY_MIN_REPLICAS={figures['min_replicas']}"]
    for replica in figures["replicas"]:
        lines.append(f"  replica {replica['address']} {replica['state']}: "
                     f"{replica['lag_bytes']} bytes behind, last confirmed "
                     f"{replica['lag_seconds']}s ago"
                     + ("" if replica["in_sync"] else " (not in sync)"))
    return "\n".join(lines)
