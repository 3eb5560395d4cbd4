"""The delivery of one routing key's events (``worker.fleet`` runs one per key it serves).

The lease holder moves the next event into the in-flight list (in a backlog, by severity:
``worker.lanes``), sends the in-flight list's head until PagerDuty gives a final answer,
then drops it from in-flight. An event found in flight at start (a crashed worker's, or
one a lapsed holder's late move put there) is sent first, so nothing is lost and an
incident's events leave in the order they were accepted.

Fenced sends: before each attempt the worker renews its lease and starts the send only
if the lease is then its own for longer than the send can take (connect + read timeout),
on its own monotonic clock. A worker that was frozen or cut off from Redis therefore
sends nothing once another may hold the lease.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from tenacity import Retrying, retry_if_exception_type, stop_never

from relay.errors import KeyBlocked, Rejected, RetryLater
from relay.history import History
from relay.keys import key_id
from relay.limiter import RateLimiter
from relay.names import Names
from relay.scripts import LATENCY_BOUNDS_MS, Scripts
from relay.settings import Settings
from relay.store import Record, now_ms
from worker.backoff import wait_backoff
from worker.lanes import MORE_GAPS, SORTED_PER_CALL, Lanes, Taken, outgoing
from worker.lease import Lease
from worker.notes import Notes, throttled
from worker.pagerduty import PagerDuty, encode_body

log = logging.getLogger(__name__)

REDIS_RETRY_S = 1.0
BOUNDS_ARG = " ".join(LATENCY_BOUNDS_MS)


class Shutdown(BaseException):
    """Stops the worker where it stands; the in-flight event stays first in line."""


class LeaseLost(Exception):
    """Another worker now holds this key's lease; stop sending."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        routing_key: str,
        client: redis.Redis,
        pagerduty: PagerDuty | None = None,
        sleep: Callable[[float], Any] | None = None,
        worker_id: str | None = None,
        scripts: Scripts | None = None,
    ) -> None:
        self.routing_key = routing_key
        self.label = settings.name_of(routing_key)
        self.client = client
        self.block_s = max(1, math.ceil(settings.lease_ttl_s))
        kid = key_id(routing_key)
        names = self.names = Names(settings.prefix)
        self.notes = Notes(client, names, History(client, names, settings), kid, self.label)
        self.queue, self.inflight = names.queue(kid), names.inflight(kid)
        self.stats = names.stats(kid)
        self.kid = kid
        self.scripts = scripts or Scripts(client)
        self.lanes = Lanes(client, names, kid, settings, self.label)
        self.storm = settings.storm_mode != "off"
        self.unsorted = 0
        self.burst = 0  # how the in-flight event's sends are paced (one found there: not)
        self.incident_ttl_ms = int(settings.incident_ttl_s * 1000)
        self.prune_every_s, self.pruned_at = settings.retention_s, -math.inf
        self.pruning: tuple[int, int, int] | None = None  # a pass: cursor, since, forgotten
        self.finish_keys = [
            names.lease(kid), self.inflight, self.stats, names.dead, names.dead_index,
            names.recent(kid), names.latency(kid), self.queue, names.queued_bytes,
        ]
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = Lease(
            client, self.scripts, names.lease(kid), names.workers(kid),
            self.worker_id, settings.lease_ttl_s, label=self.label,
        )
        self.limiter = RateLimiter(
            self.scripts, names.window(kid), names.throttle(kid),
            settings.rate_per_min, settings.rate_window_ms,
        )
        self.pagerduty = pagerduty or PagerDuty(
            settings.pd_url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
        )
        self.send_budget_s = settings.connect_timeout_s + settings.read_timeout_s
        # replicas that must hold the reservation before a send (0: no WAIT)
        self.min_replicas, self.replica_timeout_ms = (settings.min_replicas,
                                                      settings.replica_timeout_ms)
        self.blocked = False
        self.wait = wait_backoff(
            settings.retry_base_s, settings.retry_max_s, settings.retry_after_max_s
        )
        self.stop = threading.Event()
        self._sleep = sleep or self.stop.wait
        # A worker serving this key alone waits for arrivals in a BLMOVE; one of many
        # (worker.fleet) returns instead, and its loop parks until it is woken.
        self.blocking = True

    def sleep(self, seconds: float) -> None:
        """Wait, unless asked to stop: then raise Shutdown."""
        if self.stop.is_set() or self._sleep(seconds) is True or self.stop.is_set():
            raise Shutdown

    def step(self) -> bool:
        """Deliver the in-flight event or the next queued one; False when none came.

        What is delivered is always the in-flight list's head, never what the take
        returned: a lapsed holder's late move may have put an earlier event there first.
        """
        if self.client.lindex(self.inflight, 0) is None:
            if self._take() is None:
                return False
        raw = self.client.lindex(self.inflight, 0)
        if raw is None:  # another holder finished it meanwhile: we no longer hold the lease
            raise LeaseLost("the in-flight event was taken care of by another worker")
        self.deliver(str(raw))
        return True

    def _prune(self) -> None:
        """Every ``RELAY_RETENTION_S``, a pass that forgets the lanes' idle incidents
        (worker.lanes), one slice a step: each call's work is bounded, and a delivery
        waits for one slice at most."""
        if self.pruning is None:
            if time.monotonic() - self.pruned_at < self.prune_every_s:
                return
            self.pruned_at = time.monotonic()
            self.pruning = (0, self.lanes.prune_since(now_ms() - self.incident_ttl_ms), 0)
        cursor, since, gone = self.pruning
        cursor, forgotten = self.lanes.prune_slice(cursor, since)
        self.pruning = (cursor, since, gone + forgotten) if cursor else None
        if not cursor and gone + forgotten:
            log.info("key %s: %d idle incident(s) forgotten by the lanes", self.label,
                     gone + forgotten)

    def _take(self) -> str | None:
        """Sort what arrived into the lanes and move the next event in flight
        (``worker.lanes``); when nothing waits, wait up to ``block_s`` for an arrival (a
        BLMOVE that moves the arrival list's head back to its head) and return None."""
        while self.storm and self.unsorted > SORTED_PER_CALL and not self.stop.is_set():
            self.unsorted = self.lanes.take(take=False).unsorted  # a big arrival: sort it
        if (raw := self._took(self._take_past_gaps())) is not None or not self.blocking:
            return raw
        full = False
        try:
            arrived = self.client.blmove(self.queue, self.queue, self.block_s, "LEFT", "LEFT")
        except redis.exceptions.OutOfMemoryError:  # Redis is full: it refuses BLMOVE
            arrived, full = None, True
        if full:
            self.sleep(REDIS_RETRY_S)
        if arrived is None:
            return None
        return self._took(self._take_past_gaps())  # (sends are fenced: no lease check here)

    def _take_past_gaps(self) -> Taken:
        """A take, again while it stopped at its bound of gaps (each call bounded)."""
        taken = self.lanes.take()
        while taken.lane == MORE_GAPS and not self.stop.is_set():
            taken = self.lanes.take()
        return taken

    def _took(self, taken: Taken) -> str | None:
        self.unsorted, self.burst = taken.unsorted, self.lanes.burst(taken)
        return taken.raw

    def deliver(self, raw: str) -> None:
        try:
            record = Record.decode(raw)
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_letter(raw, None, Rejected(f"unreadable stored event: {exc}"))
            return
        try:
            body = encode_body(outgoing(record), self.routing_key)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            self._dead_letter(raw, record, Rejected(f"cannot be sent as JSON: {exc}"))
            return
        retrying = Retrying(
            retry=retry_if_exception_type((RetryLater, KeyBlocked)),
            wait=self.wait,
            stop=stop_never,
            sleep=self.sleep,
            before_sleep=lambda state: self._note_retry(record, state.attempt_number, state),
            reraise=True,
        )
        try:
            reply = retrying(self._attempt, record, body, raw)
        except Rejected as exc:
            self._dead_letter(raw, record, exc)
            return
        if self._finish(raw, "delivered", accepted_ms=record.accepted_ms):
            if self.blocked:
                self.blocked = False
                log.info("key %s: PagerDuty takes events again; the key is unblocked",
                         self.label)
            self.notes.outcome(record, f"delivered: {reply[:200]}")
            self.notes.story(record, "delivered", r=reply[:200])
            log.info(
                "delivered %s dedup_key=%s key=%s after %.2fs",
                record.action, record.event.get("dedup_key"), self.label,
                (now_ms() - record.accepted_ms) / 1000,
            )

    def _attempt(self, record: Record, body: bytes, raw: str | None = None) -> str:
        self.limiter.acquire(self.sleep, self.burst)
        self._fence(raw)
        log.info("sending %s dedup_key=%s key=%s", record.action, record.event.get("dedup_key"),
                 self.label)
        return self.pagerduty.send(record.kind, body)

    def _fence(self, raw: str | None = None) -> None:
        """Start a send only while the lease is ours for longer than the send can take,
        and (RELAY_MIN_REPLICAS) once enough replicas hold the reservation and every
        earlier write of the key: a failover then keeps them (replication is a prefix),
        so it may bring a re-send, never a reorder nor a send over the limit.
        Unconfirmed: no send yet; try again at the key's pace (RetryLater). Confirmed, ``raw``
        (the event about to be sent) must still head the in-flight list: a failover
        while it was retried may have rolled back the FINISH of the one before it, which
        then goes again first (LeaseLost: the loop steps again from the head)."""
        if not self.min_replicas:
            ours = self.lease.renew()
        else:
            ours, confirmed = self.lease.renew_confirmed(self.min_replicas,
                                                         self.replica_timeout_ms)
            if ours and confirmed < self.min_replicas:
                # again at the key's pace, not PagerDuty's growing backoff: replicas
                # back after a long absence, the backlog moves within one pace
                pace = self.limiter.window_ms / 1000 / max(self.limiter.limit, 1)
                raise RetryLater(f"{confirmed} of {self.min_replicas} replicas confirmed "
                                 "the reservation; not sending yet", retry_after=pace)
            if ours and raw is not None and self.client.lindex(self.inflight, 0) != raw:
                raise LeaseLost("another event heads the in-flight list (a failover rolled "
                                "back a FINISH): sending from the head again")
        if not ours:
            raise LeaseLost("lease lost before sending")
        if self.lease.remaining() < self.send_budget_s:
            raise LeaseLost(
                f"lease would lapse within a send ({self.lease.remaining():.1f}s left, "
                f"a send may take {self.send_budget_s:.1f}s)")

    def _note_retry(self, record: Record, attempt: int, state: Any) -> None:
        error = state.outcome.exception()
        if isinstance(error, KeyBlocked):
            self.blocked = True
        self.notes.retry(record, attempt, error,
                         state.next_action.sleep if state.next_action else 0.0)
        if throttled(error):
            log.warning("key %s: PagerDuty throttles; sending at most %d per %.0fs for now",
                        self.label, self.limiter.throttled(), self.limiter.window_ms / 1000)

    def _dead_letter(self, raw: str, record: Record | None, error: Rejected) -> None:
        dead_id, letter = self.notes.letter(raw, error)
        if self._finish(raw, "dead", dead_id, letter):
            self.notes.dead(record, error, dead_id)

    def _finish(
        self, raw: str, counter: str, dead_id: str = "", letter: str = "", accepted_ms: int = 0
    ) -> bool:
        done = self.scripts.finish(
            keys=self.finish_keys,
            args=[self.worker_id, raw, counter, dead_id, letter, accepted_ms, BOUNDS_ARG],
        )
        if not done:
            log.warning("key %s: lease lost before finishing; its holder resends", self.label)
        return bool(done)

