"""The loop that runs the evaluation rounds and hands their pages on.

Any number of processes (each channel worker's housekeeping) run an ``Evaluator``; the
one holding ``Names.heartbeat_lease`` evaluates, the others wait for it to lapse. A round
(every ``interval_s``) is a few calls of the ROUND script (relay.heartbeats.rounds), each
looking at no more than ``per_call`` due checks, on Redis's clock; the transitions and
their pages are decided there, once, however many processes try. Then the pages' outbox
is handed, oldest first, to the injected ``send(page, check)`` (relay.heartbeats.pages
stores it as an event), each page dropped once sent. Sends are fenced as the worker's: a
send starts only while the lease is ours for longer than ``send_budget_s``, so a process
that lost its lease (frozen, cut off) sends nothing. A crash between a send and the drop
sends that page again: the same dedup_key, and the same outage's trigger or resolve.

The relay's own downtime: each round stamps ``Names.heartbeat_clock``; a round that
finds it older than ``gap_s`` (no evaluator ran), or the ingress's mark
(``Names.heartbeat_ingress``) missing or older (no ping could arrive), gives every check
one grace from now before it may go down, says so at WARNING, and keeps it in
``Names.heartbeat_gap`` for ``pd-relay status``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from relay import scripts
from relay.errors import RelayError
from relay.heartbeats.catalog import Catalog
from relay.heartbeats.model import Check, Page
from relay.heartbeats.schedule import expected_after
from relay.heartbeats.store import IN_FLIGHT, VERSION, Heartbeats, schedule
from relay.heartbeats.sweep import GONE_AFTER_S, SLICE, Sweep
from relay.names import Names

log = logging.getLogger(__name__)
Send = Callable[[Page, Check], None]


class Evaluator:
    def __init__(self, client: redis.Redis, names: Names, catalog: Catalog, send: Send, *,
                 clock: Callable[[], float] | None = None, interval_s: float = 1.0,
                 lease_ttl_s: float = 3.0, send_budget_s: float = 1.0,
                 per_call: int = 50, calls: int = 400, gap_s: float = 15.0,
                 watch_ingress: bool = True, batch: int = 100,
                 monotonic: Callable[[], float] = time.monotonic,
                 holder: str | None = None, gone_after_s: float = GONE_AFTER_S,
                 sweep_count: int = SLICE) -> None:
        self.client = client
        self.names = names
        self.catalog = catalog
        self.send = send
        self.store = Heartbeats(client, names, clock=clock)
        self.interval_s = interval_s
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self.send_budget_s = send_budget_s
        self.per_call, self.calls = per_call, calls
        self.batch = min(batch, IN_FLIGHT)  # the outbox's pages it may be handing on
        self.gap_ms = int(gap_s * 1000)
        self.watch_ingress = watch_ingress
        self.monotonic = monotonic
        self.holder = holder or f"evaluator-{uuid.uuid4().hex[:12]}"
        self._acquire = client.register_script(scripts.LEASE_ACQUIRE)
        self._renew = client.register_script(scripts.LEASE_RENEW)
        self._valid_until = 0.0
        self._refreshed = False  # the catalog was read again this round (on a miss)
        self.sweep = Sweep(self.store, lambda name: self._check(name) is not None,
                           sweep_count, gone_after_s)  # checks gone from the routes file

    # the lease

    def remaining(self) -> float:
        """Seconds the lease is ours for sure (this process's monotonic clock, counted
        from before the command that last took or kept it)."""
        return max(0.0, self._valid_until - self.monotonic())

    def _lease(self, script: object) -> bool:
        started = self.monotonic()
        ours = bool(script(keys=[self.names.heartbeat_lease],  # type: ignore[operator]
                           args=[self.holder, self.lease_ttl_ms]))
        if ours:
            self._valid_until = started + self.lease_ttl_ms / 1000
        elif self._valid_until:
            log.warning("heartbeats: lost the evaluation lease")
            self._valid_until = 0.0
        return ours

    def release(self) -> None:
        if self._valid_until:
            self._valid_until = 0.0
            self._renew(keys=[self.names.heartbeat_lease], args=[self.holder, 0])

    # a round

    def round(self) -> int:
        """Take (or keep) the lease; if ours, evaluate the due checks and hand the
        outbox's pages on. Returns how many pages were handed on."""
        held = self._valid_until > 0
        if not self._lease(self._acquire):
            return 0
        self._refreshed = False
        if not held:
            self.reschedule()
        self.evaluate()
        self.sweep.step()
        return self.deliver()

    def evaluate(self) -> int:
        """One evaluation: the due checks moved on, in slices of ``per_call``; the
        expected times of cron checks just pinged filled in. Returns how many due checks
        were looked at."""
        names, looked = self.names, 0
        keys = [names.heartbeat_due, names.heartbeat_pages, names.heartbeat_clock,
                names.heartbeat_ingress, names.heartbeat_gap]
        for call in range(self.calls):
            found = self.store.round_script(keys=keys, args=[
                self.store.now_arg(), names.heartbeat(""), names.heartbeat_pings(""),
                self.per_call, self.gap_ms, "1" if self.watch_ingress else "0",
                "1" if call == 0 else "0", VERSION])
            count, noticed, gap_ms, fill = int(found[0]), found[1], int(found[2]), found[3:]
            looked += count
            if noticed:
                self._say_gap(str(noticed), gap_ms)
            for name, last_ping in zip(fill[::2], fill[1::2], strict=True):
                self._fill(str(name), str(last_ping))
            if count < self.per_call:
                break
        return looked

    def reschedule(self) -> int:
        """At the first round of a lease: the checks up or late whose period, cron, tz or
        grace changed since their last ping (the routes file changed) have their deadlines
        computed again from that ping, at once. Returns how many."""
        checks, names = self.catalog.all(), self.names
        with self.client.pipeline(transaction=False) as pipe:
            for check in checks:
                pipe.hmget(names.heartbeat(check.name), "state", "sched", "last_ping")
            rows = pipe.execute()
        changed = 0
        for check, (state, sched, last_ping) in zip(checks, rows, strict=True):
            if state not in ("up", "late") or not last_ping or sched == schedule(check):
                continue
            expected = expected_after(check, int(last_ping) / 1000)
            changed += int(self.store.reschedule_script(
                keys=[names.heartbeat(check.name), names.heartbeat_due],
                args=[self.store.now_arg(), check.name, last_ping, schedule(check),
                      int(expected * 1000), int(check.grace_s * 1000)]))
        if changed:
            log.warning("heartbeats: %d check(s) of a changed period, cron or grace: their "
                        "deadlines counted again from their last pings", changed)
        return changed

    def _check(self, name: str) -> Check | None:
        """The check of ``name``; on a miss the catalog reads the run-time checks again
        (once a round): one added since its last read (within its refresh, or at a worker's
        start) is not taken for one removed and its page dropped."""
        check = self.catalog.get(name)
        if check is None and not self._refreshed:
            self._refreshed = True
            self.catalog.refresh()
            check = self.catalog.get(name)
        return check

    def _fill(self, name: str, last_ping: str) -> None:
        check = self._check(name)
        if check is None or not last_ping:
            return
        expected = expected_after(check, int(last_ping) / 1000)
        self.store.fill_script(keys=[self.names.heartbeat(name), self.names.heartbeat_due],
                               args=[name, last_ping, int(expected * 1000)])

    def _say_gap(self, reason: str, gap_ms: int) -> None:
        if reason == "start":
            log.warning("heartbeats: first evaluation: every check gets one grace from now "
                        "before it may go down")
        elif reason == "ingress":
            log.warning("heartbeats: no ingress node can take pings (its mark is missing): "
                        "no check goes down until one is back, and then not within one grace")
        else:
            log.warning("heartbeats: no evaluation for %.0f s (the relay was down): every "
                        "check gets one grace from now before it may go down", gap_ms / 1000)

    def deliver(self) -> int:
        """Hand the outbox's pages to ``send``, oldest first, each while the lease is
        ours for longer than a send may take; a page is dropped once sent. A send that
        fails stops the delivery (the order is kept: it is tried again next round). Reads
        ``batch`` pages at a time, at most ``calls`` times a round and for about
        ``interval_s`` (many checks down at once are paged in a round or a few, not
        ``batch`` a second, and the next evaluation is not held up long)."""
        sent, until = 0, self.monotonic() + self.interval_s
        for _ in range(self.calls):
            if sent and self.monotonic() > until:
                break
            pages = self.store.pages(self.batch)
            for raw, page in pages:
                check = self._check(page.name)
                if check is None and page.action == "resolve":  # removed since: its
                    check = Check(page.name, grace_s=0.0)  # incident is closed wherever it is
                if check is None:
                    log.warning("heartbeat %s: %s dropped: no such check any more",
                                page.name, page.action)
                    self.store.page_done(raw)
                    continue
                if not self._lease(self._renew) or self.remaining() < self.send_budget_s:
                    log.warning("heartbeats: not sending: the evaluation lease is not ours "
                                "for long enough")
                    return sent
                try:
                    self.send(page, check)
                except (RelayError, redis.RedisError) as exc:  # a full queue, Redis away:
                    log.warning("heartbeat %s: %s not handed on (tried again): %s",  # said,
                                page.name, page.action, exc)  # no traceback every second
                    return sent
                except Exception:  # noqa: BLE001 - any sender's failure: again next round
                    log.exception("heartbeat %s: %s not handed on (tried again)", page.name,
                                  page.action)
                    return sent
                self.store.page_done(raw)
                log.info("heartbeat %s: %s (outage %d%s)", page.name, page.action,
                         page.outage, f", {page.reason}" if page.reason else "")
                sent += 1
            if len(pages) < self.batch:
                break
        return sent

    def run(self, stop: threading.Event) -> None:
        """Rounds every ``interval_s`` until ``stop`` is set (Redis down: tried again)."""
        try:
            while not stop.is_set():
                try:
                    self.round()
                except redis.RedisError as exc:
                    log.warning("heartbeats: evaluation round failed: %s", type(exc).__name__)
                    self._valid_until = 0.0
                stop.wait(self.interval_s)
        finally:
            try:
                self.release()
            except redis.RedisError:
                pass
