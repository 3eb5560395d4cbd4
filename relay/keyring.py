"""The keys the relay has served, and what a key removed from the keys file left behind.

Every process records its configured keys (by id, with the masked key) at start-up. A
key that is gone from the file but still has queued or in-flight events, or incidents
whose follow-ups must travel on it, stops start-up: taking it out silently would strand
its events and send its incidents' acknowledges and resolves to keys where PagerDuty
drops them. The operator puts it back (``KEY drain`` until it is empty) or runs
``pd-relay forget-key ID``, which moves its events to the dead letters.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

import redis

from relay import indexing
from relay.keys import key_id, mask
from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings
from relay.store import is_gap, now_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leftover:
    kid: str
    label: str  # the masked key
    queued: int
    in_flight: int
    incidents: int

    @property
    def empty(self) -> bool:
        return not (self.queued or self.in_flight or self.incidents)

    def problem(self, keys_file: object) -> str:
        return (
            f"key {self.label} (id {self.kid}) is no longer in {keys_file} but has "
            f"{self.queued} queued, {self.in_flight} in flight and {self.incidents} open "
            f"incident(s) whose follow-ups must go to it: put it back, as `KEY drain` to "
            f"give it no new incidents until it is empty, or run `pd-relay forget-key "
            f"{self.kid}` to move its events to the dead letters and forget its incidents"
        )


def register(client: redis.Redis, names: Names, settings: Settings) -> list[Leftover]:
    """Record the configured keys; return every removed key that left something behind
    (removed keys that left nothing are forgotten)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(names.known_keys, mapping={key_id(k): f"{settings.name_of(k)} {mask(k)}"
                                             for k in settings.routing_keys})
        pipe.hgetall(names.known_keys)
        known: dict[str, str] = pipe.execute()[1]
    configured = {key_id(k) for k in settings.routing_keys}
    removed = [kid for kid in known if kid not in configured]
    leftovers = _leftovers(client, names, settings, {kid: known[kid] for kid in removed})
    empty = [left.kid for left in leftovers if left.empty]
    for kid in empty:  # its incidents idle past their TTL (no sweep covers it now)
        Scripts(client).forget_incidents(names, kid, "+inf")
    if empty:
        client.hdel(names.known_keys, *empty)
    return [left for left in leftovers if not left.empty]


def known_keys(client: redis.Redis, names: Names) -> dict[str, str]:
    """Every key the relay has served and not forgotten: key id -> "name masked-key"."""
    return {str(kid): str(label) for kid, label in client.hgetall(names.known_keys).items()}


def removed_keys(client: redis.Redis, names: Names, settings: Settings) -> list[Leftover]:
    """Keys served before but not configured now."""
    known = known_keys(client, names)
    configured = {key_id(k) for k in settings.routing_keys}
    return _leftovers(client, names, settings,
                      {k: v for k, v in known.items() if k not in configured})


def _leftovers(client: redis.Redis, names: Names, settings: Settings,
               labels: dict[str, str]) -> list[Leftover]:
    """What each key left: events, and incidents open (those silent past
    ``RELAY_INCIDENT_TTL_S`` are not: status counts them so, ENQUEUE forgets them)."""
    idle = now_ms() - int(settings.incident_ttl_s * 1000)
    width = len(names.waiting("")) + 2
    with client.pipeline(transaction=False) as pipe:
        for kid in labels:
            for name in names.waiting(kid):
                pipe.llen(name)
            pipe.llen(names.inflight(kid))
            pipe.zcount(names.incidents(kid), idle, "+inf")
        counts = pipe.execute()
    return [
        Leftover(kid, label, sum(counts[width * n: width * n + width - 2]),
                 *counts[width * n + width - 2: width * n + width])
        for n, (kid, label) in enumerate(labels.items())
    ]


def forget(client: redis.Redis, names: Names, settings: Settings, kid: str) -> int:
    """Move a removed key's in-flight and queued events to the dead letters (in that
    order), forget its incidents and the key; return how many events moved."""
    if kid in {key_id(k) for k in settings.routing_keys}:
        raise ValueError(f"key id {kid} is still in {settings.keys_file}: remove it first")
    if client.hexists(names.known_keys, kid):  # its incidents' owners go with them
        Scripts(client).forget_incidents(names, kid, "+inf")
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(  # type: ignore[no-untyped-call]
                    *names.waiting(kid), names.inflight(kid), names.known_keys,
                    names.stats(kid))
                label = pipe.hget(names.known_keys, kid)
                queued = int(pipe.hget(names.stats(kid), "bytes") or 0)
                if label is None:
                    raise ValueError(f"no removed key with id {kid} (see `pd-relay status`)")
                raws = [raw for name in (names.inflight(kid), *names.waiting(kid))
                        for raw in pipe.lrange(name, 0, -1) if not is_gap(str(raw))]
                pipe.multi()
                at = now_ms()
                for n, raw in enumerate(raws):  # ids sort in queue order (one time)
                    dead_id = f"{at:x}-{n:04x}{uuid.uuid4().hex[:4]}"
                    pipe.hset(names.dead, dead_id, json.dumps({
                        "id": dead_id, "key_id": kid, "routing_key": label, "failed_at": at,
                        "reason": "its key was removed from the keys file (forget-key)",
                        "status": None, "reply": "", "raw": raw,
                    }))
                    pipe.zadd(names.dead_index, {dead_id: at})
                pipe.hincrby(names.stats(kid), "dead_letters", len(raws))
                pipe.delete(*names.waiting(kid), names.inflight(kid), names.incidents(kid),
                            names.pending(kid))
                pipe.hdel(names.stats(kid), "laned", "bytes")  # none queued: the total
                pipe.decrby(names.queued_bytes, queued)  # counts them no more
                pipe.hdel(names.known_keys, kid)
                pipe.execute()
                # and to the keys' sum: bytes a previous release queued uncounted would
                # have taken it below 0 (room past the total cap until the next sweep)
                indexing.recount(client, names)
                log.warning("forgot removed key %s: %d event(s) moved to the dead letters",
                            label, len(raws))
                return len(raws)
            except redis.WatchError:
                continue
