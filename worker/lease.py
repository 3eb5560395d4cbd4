"""The delivery lease: of all workers serving one routing key, only the holder sends.

One sender per key keeps every incident's events in acceptance order. The lease has a
short TTL renewed by a heartbeat thread, so a killed worker's lease lapses within
``ttl_s`` and a standby (or the restarted worker) takes over. Taking, keeping and
beating all work when Redis is full (relay/scripts.py).
"""

from __future__ import annotations

import logging
import threading
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
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.lease_key = lease_key
        self.workers_key = workers_key
        self.worker_id = worker_id
        self.ttl_ms = int(ttl_s * 1000)
        self.clock = clock
        self._valid_until = 0.0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

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

    def settle(self, ours: bool, started: float) -> bool:
        """Record what a command sent at ``started`` (this clock) found: the lease ours
        for one more TTL from then, or not ours. Returns ``ours``."""
        if ours:
            self._valid_until = started + self.ttl_ms / 1000
            return True
        return self._lost()

    def _lost(self) -> bool:
        """The lease is not ours (any more: say so); False."""
        if self._valid_until:
            log.warning("lost the delivery lease")
        self._valid_until = 0.0
        return False

    def release(self) -> None:
        self._valid_until = 0.0
        try:
            self.scripts.lease_renew(keys=[self.lease_key], args=[self.worker_id, 0])
            self.client.zrem(self.workers_key, self.worker_id)
        except redis.RedisError as exc:
            log.warning("could not release the lease: %s", exc)

    def beat(self) -> None:
        """Renew the lease if held and record this worker as alive for one more TTL."""
        now_ms = int(time.time() * 1000)
        self.scripts.heartbeat(keys=[self.workers_key], args=[
            self.worker_id, now_ms + self.ttl_ms, now_ms - STALE_WORKER_MS])
        if self._valid_until:
            self.renew()

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _heartbeat(self) -> None:
        interval = self.ttl_ms / 3000
        while True:
            try:
                self.beat()
            except redis.RedisError as exc:
                self._valid_until = 0.0  # cut off from Redis: ours no longer for sure
                log.warning("heartbeat failed: %s", exc)
            if self._stopped.wait(interval):
                return
