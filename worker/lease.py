"""The delivery lease: of all workers serving one routing key, only the holder sends.

One sender per key keeps every incident's events in acceptance order. The lease has a
short TTL renewed by its process's tick (``worker.keeper``) and before each send, so a
killed worker's lease lapses within ``ttl_s`` and a standby (or the restarted worker)
takes over. Taking and keeping work when Redis is full (relay/scripts.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from relay.scripts import Scripts

log = logging.getLogger(__name__)

STALE_WORKER_MS = 60_000


class Lease:
    def __init__(
        self,
        client: redis.Redis,
        scripts: Scripts,
        lease_key: str,
        workers_key: str,
        worker_id: str,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        label: str = "",
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.lease_key = lease_key
        self.workers_key = workers_key
        self.worker_id = worker_id
        self.ttl_ms = int(ttl_s * 1000)
        self.clock = clock
        self.label = label
        self._valid_until = 0.0

    def remaining(self) -> float:
        """Seconds the lease is ours for sure, on this process's monotonic clock, counted
        from before the command that last set or renewed it (so never too long)."""
        return max(0.0, self._valid_until - self.clock())

    def acquire(self) -> bool:
        started = self.clock()
        return self.settle(bool(self.scripts.lease_acquire(
            keys=[self.lease_key], args=[self.worker_id, self.ttl_ms])), started)

    def renew(self) -> bool:
        started = self.clock()
        return self.settle(bool(self.scripts.lease_renew(
            keys=[self.lease_key], args=[self.worker_id, self.ttl_ms])), started)

    def renew_confirmed(self, replicas: int, timeout_ms: int) -> tuple[bool, int]:
        """Renew, and WAIT on the same connection for ``replicas`` replicas: whether the
        lease is ours, and how many replicas confirmed every write up to the renewal
        (WAIT covers a connection's writes; the renewal, a write, brings this one's up
        to everything the primary had, the limiter's reservation included)."""
        started = self.clock()
        with self.client.pipeline(transaction=False) as pipe:
            self.scripts.lease_renew(keys=[self.lease_key],
                                     args=[self.worker_id, self.ttl_ms], client=pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
            ours, confirmed = pipe.execute()
        return self.settle(bool(ours), started), int(confirmed)

    def settle(self, ours: bool, started: float, quiet: bool = False) -> bool:
        """Record what a command sent at ``started`` (this clock) found: the lease ours
        for one more TTL from then, or not ours (said, unless ``quiet``: a tick says it
        once for all its keys). Returns ``ours``."""
        if ours:
            self._valid_until = started + self.ttl_ms / 1000
            return True
        return self._lost(quiet)

    def _lost(self, quiet: bool = False) -> bool:
        """The lease is not ours (any more: say so); False."""
        if self._valid_until and not quiet:
            log.warning("key %s: lost the delivery lease", self.label)
        self._valid_until = 0.0
        return False

    def release(self) -> None:
        self._valid_until = 0.0
        try:
            self.scripts.lease_renew(keys=[self.lease_key], args=[self.worker_id, 0])
            self.client.zrem(self.workers_key, self.worker_id)
        except redis.RedisError as exc:
            log.warning("could not release the lease: %s", exc)
