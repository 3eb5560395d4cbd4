"""How much memory the relay needs beside its queues, by its caps (promise 8; docs/
DESIGN.md, "Memory the relay keeps beside the queues is bounded too"), and whether a
Redis gives it that room and never evicts.
"""

from __future__ import annotations

import math

import redis

from relay.settings import Settings

# A remembered incident: its set's member (120), its owner (100), its index entry (100:
# Names.where, issue 26; 98.5 measured with 50,000) and storm mode's entry (100,
# worker.lanes), measured on Redis 6.2
INCIDENT_BYTES = 420


def capped_mb(settings: Settings) -> int:
    """What the caps beside the queues' let Redis hold (MB): the channels' outbox, the
    history, and the incidents remembered (each key's and the held ones)."""
    incidents = (len(settings.routing_keys) + 1) * settings.incidents_max * INCIDENT_BYTES
    return (math.ceil(settings.outbox_max_mb) + math.ceil(settings.history_max_mb)
            + math.ceil(incidents / 2**20))


def least_redis_mb(settings: Settings) -> int:
    """The least ``maxmemory`` (MB) that leaves room for the queues' cap and a quarter
    more, the other caps (``capped_mb``), and 48 MB for dead letters, counters, RQ's jobs
    (bounded at about 16 MB: relay/channels/rqjobs.py) and the channels' memory of
    incidents (about 12 MB: relay/channels/outbox.py)."""
    return math.ceil(settings.queues_max_mb * 1.25) + capped_mb(settings) + 48


def caps_named(settings: Settings) -> str:
    """The settings ``least_redis_mb`` counts, as a refusal names them."""
    return (f"RELAY_QUEUES_MAX_MB={settings.queues_max_mb:g} and RELAY_OUTBOX_MAX_MB="
            f"{settings.outbox_max_mb:g} (with RELAY_HISTORY_MAX_MB={settings.history_max_mb:g}"
            f" and RELAY_INCIDENTS_MAX={settings.incidents_max} for "
            f"{len(settings.routing_keys)} keys)")


def memory_problems(client: redis.Redis, settings: Settings) -> list[str]:
    """What in Redis's memory settings breaks the relay's promises: an eviction policy
    (Redis would drop queued events when full), or a ``maxmemory`` that leaves the queues'
    cap no room. Nothing when Redis will not say (CONFIG disabled, as on some hosted
    Redis)."""
    try:
        found = client.config_get("maxmemory*")
    except redis.ResponseError:
        return []
    problems = []
    policy = found.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        problems.append(f"Redis at {settings.redis_shown} evicts keys when full "
                        f"(maxmemory-policy {policy}): it would drop queued events; set "
                        "maxmemory-policy noeviction")
    limit = int(found.get("maxmemory", 0) or 0) / 2**20
    least = least_redis_mb(settings)
    if limit and limit < least:
        problems.append(f"Redis's maxmemory ({limit:g} MB) leaves {caps_named(settings)} "
                        f"no room: give Redis at least {least} MB or lower the caps")
    return problems
