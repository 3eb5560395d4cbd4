"""One worker process delivering for many routing keys (``pd-relay worker --keys``).

Each key keeps everything a single key's worker has (``worker.delivery.Worker``): its
own lease (sends fenced by it), rate window, order, storm lanes, figures. What the keys
share is the process: one Redis connection pool and one set of scripts, one HTTP session,
one thread keeping every lease (``worker.keeper``: one round trip a tick) and one thread
listening on ``Names.wake`` for keys given events. A key's own thread runs only while its
lease is ours and something waits for it; otherwise it is parked on an event, woken by a
wake message, or by the tick that finds events waiting (pub/sub loses messages while
disconnected: the tick bounds how long a lost one delays a key).

Standby: a process takes the free leases of its own share of the keys (``share``) at
once, and the others only once it has seen them free for ``grace_s``: with two processes
each key is delivered by the one whose share it is, and taken over by the other within
the lease's TTL (plus a tick and the grace) when that one dies or freezes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis

from relay.keys import key_id
from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings
from worker.delivery import Worker
from worker.keeper import OURS, Keeper
from worker.pagerduty import shared_pagerduty
from worker.served import Served, in_share
from worker.wake import listen

log = logging.getLogger(__name__)

# A tick at least this often: a lost wake message delays a key this long at most. A tick
# of 1,000 keys costs ~6 ms of the process's CPU (packing the commands) and ~3.4 ms of
# Redis's: every 2 s, 0.3% of a core idle.
CHECK_S = 2.0


class Fleet:
    def __init__(self, settings: Settings, keys: Iterable[str], client: redis.Redis, *,
                 prefer: tuple[int, int] | None = None, pagerduty: Any = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] | None = None,
                 worker_id: str | None = None) -> None:
        keys = list(keys)
        self.settings = settings
        self.client = client
        self.names = Names(settings.prefix)
        self.scripts = Scripts(client)
        self.pagerduty = pagerduty or shared_pagerduty(settings)
        self.worker_id = worker_id or \
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.prefer = prefer
        self.clock, self.sleep = clock, sleep
        self.tick_s = min(settings.lease_ttl_s / 3, CHECK_S)
        self.grace_s = self.tick_s
        self.keeper = Keeper(client, self.names, self.worker_id, settings.lease_ttl_s, wall)
        self.served: dict[str, Served] = {}
        self.stopping = threading.Event()
        self.failed = False  # a key's loop failed (a defect): the process exits non-zero
        self.threads = False  # run() starts a thread per key; tests call serve() instead
        self.set_keys(keys, settings)

    # ---- which keys ----------------------------------------------------------------

    def set_keys(self, keys: Iterable[str], settings: Settings | None = None) -> None:
        """Serve exactly ``keys``: start loops for new ones, stop removed ones' loops and
        give up their leases."""
        settings = settings or self.settings
        wanted = {key_id(key): key for key in keys}
        gone = [kid for kid in self.served if kid not in wanted]
        for kid in gone:
            self._stop_loop(self.served.pop(kid))
        if gone:
            try:
                self.keeper.release(gone)
            except redis.RedisError as exc:  # each lease lapses within its TTL anyway
                log.warning("could not give up the leases of %d removed key(s): %s",
                            len(gone), exc)
            log.info("stopped serving %d key(s)", len(gone))
        added = [key for kid, key in wanted.items() if kid not in self.served]
        for key in added:
            worker = Worker(settings, key, self.client, pagerduty=self.pagerduty,
                            sleep=self.sleep, worker_id=self.worker_id, scripts=self.scripts)
            worker.blocking = False
            worker.lease.clock = self.clock
            served = self.served[worker.kid] = Served(worker)
            if self.threads:
                self._start_loop(served)
        if added:
            log.info("serving %d key(s) more, %d in all", len(added), len(self.served))

    # ---- the tick ------------------------------------------------------------------

    def tick(self) -> None:
        """Keep every lease and take the wanted free ones (one round trip), then wake
        each key whose lease is ours and that has work."""
        kids = list(self.served)
        now = self.clock()
        take = [self._wants(self.served[kid], kid, now) for kid in kids]
        started = self.clock()
        try:
            found = self.keeper.keep(kids, take, self.prefer)
        except redis.RedisError:
            for served in self.served.values():  # cut off: no lease is ours for sure
                served.worker.lease.settle(False, started, quiet=True)
            raise
        taken, lost, idle = [], [], []
        for kid, seen in zip(kids, found, strict=True):
            if (maybe := self.served.get(kid)) is None:
                continue
            served, worker = maybe, maybe.worker
            held = worker.lease.remaining() > 0
            worker.lease.settle(seen.state == OURS, started, quiet=True)
            served.free_since = (served.free_since or now) if seen.state == 1 else None
            if seen.state == OURS and not held:
                taken.append(worker.label)
            elif seen.state != OURS and held:
                lost.append(worker.label)
            if seen.state == OURS and (seen.waiting or _prune_due(worker)):
                served.wake.set()
            if seen.state == OURS and not seen.waiting and not in_share(kid, self.prefer):
                idle.append(kid)
        if taken:
            log.info("took the lease of %d key(s): %s", len(taken), _some(taken))
        if lost:
            log.warning("lost the lease of %d key(s) (another process holds it now): %s",
                        len(lost), _some(lost))
        if idle and self.prefer is not None:
            self._give_back(idle)

    def _give_back(self, kids: list[str]) -> None:
        """Give the idle keys of another's share back to a process whose share they are and
        that ticked in the last tick and a half: after a restart every key would otherwise
        stay where it went, and the load with it. A key whose loop is delivering (its lock
        held) is kept; a process that stopped ticking (killed, frozen) gets nothing back."""
        given = []
        recent = self.keeper.shares_alive(kids, within_s=1.5 * self.tick_s)
        for kid, shares in zip(kids, recent, strict=True):
            served = self.served.get(kid)
            if served is None or not any(in_share(kid, share) for share in shares):
                continue
            if not served.lock.acquire(blocking=False):
                continue
            try:
                served.worker.lease.settle(False, self.clock(), quiet=True)
                self.keeper.give_back(kid)
                given.append(served.worker.label)
            finally:
                served.lock.release()
        if given:
            log.info("gave %d key(s) back to the process whose share they are: %s",
                     len(given), _some(given))

    def _wants(self, served: Served, kid: str, now: float) -> bool:
        """Whether to take this key's lease if free: a key of our share at once, another
        once it stayed free for ``grace_s`` (its own process is gone or frozen)."""
        if served.worker.lease.remaining() > 0 or in_share(kid, self.prefer):
            return True
        return served.free_since is not None and now - served.free_since >= self.grace_s

    def wake(self, kid: str) -> None:
        served = self.served.get(kid)
        if served is not None:
            served.wake.set()

    def wake_all(self) -> None:
        for served in list(self.served.values()):
            served.wake.set()

    # ---- a key's loop (worker.served) ----------------------------------------------

    def serve(self, kid: str) -> None:
        self.served[kid].serve()

    def _start_loop(self, served: Served) -> None:
        served.start(self._failed)

    def _stop_loop(self, served: Served) -> None:
        served.stop()

    def _failed(self) -> None:
        """A key's loop failed (a defect, logged): the process stops, with status 1."""
        self.failed = True
        self.stopping.set()

    # ---- the process ---------------------------------------------------------------

    def run(self, reload: Callable[[], Any] | None = None) -> None:
        """Serve until ``stop``: the listener and a loop per key in threads, the ticks
        here. ``reload`` (set by SIGHUP) is asked for each tick and run here."""
        log.info("worker %s serving %d key(s)", self.worker_id, len(self.served))
        self.threads = True
        for served in self.served.values():
            self._start_loop(served)
        threading.Thread(target=listen, args=(self,), name="wake", daemon=True).start()
        try:
            while not self.stopping.is_set():
                if reload is not None:
                    reload()
                try:
                    self.tick()
                except redis.RedisError as exc:
                    log.warning("keeping the leases failed: %s; none is ours for sure until "
                                "the next tick", exc)
                self.stopping.wait(self.tick_s)
        finally:
            for served in self.served.values():
                served.worker.stop.set()
                served.wake.set()
            for served in self.served.values():
                self._stop_loop(served)
            try:
                self.keeper.release(list(self.served))
            except redis.RedisError as exc:
                log.warning("could not give up the leases: %s", exc)
            log.info("worker %s stopped", self.worker_id)

    def stop(self) -> None:
        self.stopping.set()
        for served in list(self.served.values()):
            served.worker.stop.set()
            served.wake.set()


def _some(labels: list[str], most: int = 20) -> str:
    more = f" and {len(labels) - most} more" if len(labels) > most else ""
    return ", ".join(labels[:most]) + more


def _prune_due(worker: Worker) -> bool:
    return worker.pruning is not None or \
        time.monotonic() - worker.pruned_at >= worker.prune_every_s
