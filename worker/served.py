"""One key served by a worker process (``worker.fleet``): its ``Worker`` and the thread
that delivers its events while its lease is ours and something waits, parked otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from worker.delivery import REDIS_RETRY_S, LeaseLost, Shutdown, Worker

log = logging.getLogger(__name__)


def in_share(kid: str, share: tuple[int, int] | None) -> bool:
    """Whether the key with id ``kid`` is in share ``i`` of ``n`` (1-based), by its id:
    the same on every process and run, whatever the keys file's order."""
    if share is None:
        return True
    i, n = share
    return int(kid, 16) % n == i - 1


def parse_share(text: object) -> tuple[int, int] | None:
    """A share as written ("I/N": share I, 1 to N, of N; ``--shard``, ``--prefer``, and
    what a process says of itself in ``Names.worker_share``), or None."""
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        return None
    return (i, n) if 1 <= i <= n else None


@dataclass
class Served:
    worker: Worker
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    free_since: float | None = None  # when this process first saw the lease free
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while delivering

    def serve(self) -> None:
        """Deliver the key's events while its lease is ours and something waits (or a
        prune pass is under way); then return, and the loop parks."""
        worker = self.worker
        while not worker.stop.is_set() and worker.lease.remaining() > 0:
            try:
                with self.lock:
                    if worker.lease.remaining() <= 0:  # given back meanwhile
                        return
                    worker._prune()
                    if not worker.step() and worker.pruning is None:
                        return
            except (redis.RedisError, LeaseLost) as exc:
                log.warning("key %s: %s; trying again", worker.label,
                            exc or type(exc).__name__)
                worker.sleep(REDIS_RETRY_S)

    def loop(self, failed: Callable[[], None]) -> None:
        """Park until woken, serve, again, until stopped; ``failed`` on a defect."""
        try:
            while not self.worker.stop.is_set():
                self.wake.wait()
                self.wake.clear()
                self.serve()
        except Shutdown:
            pass
        except Exception:  # a defect: say so, and the process stops (supervisord restarts it)
            log.exception("key %s: the delivery loop failed", self.worker.label)
            failed()

    def start(self, failed: Callable[[], None]) -> None:
        self.thread = threading.Thread(target=self.loop, args=(failed,), daemon=True,
                                       name=f"key-{self.worker.kid}")
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=self.worker.send_budget_s + 1)
