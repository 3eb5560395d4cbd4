"""The exporter (``pd-relay history-exporter``): reads the history stream with the
consumer group ``Names.history_group`` and writes its steps to PostgreSQL
(``relay.history.pg.writer``), a batch at a time, acknowledging entries only once their
batch is committed. Several may run: the group gives each entry to one of them, and an
exporter that died holding entries has them claimed by another once idle
(``XAUTOCLAIM``); its batch, written again, writes nothing twice.

Each turn: claim what a dead exporter held (every ``claim_every_s``), else go on with
what this one holds (read but not acknowledged: a batch that failed), else read new
entries (``BLOCK``, at most ``batch`` of them). An entry read back empty was trimmed
while held: counted lost (relay.history.loss counts the ones never delivered) when its
acknowledgement is the one that removes it, so once.

PostgreSQL (or Redis) down or slow: the batch stays held (in the group: nothing moves on
without it), the exporter waits with backoff and says so once per outage, then the same
batch is written again. Delivery never waits for it: the stream is the buffer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from relay.errors import RecordDown
from relay.history.entries import Step, steps_of
from relay.history.pg.acks import ACK, committed
from relay.history.pg.connect import connect, hide
from relay.history.pg.migrate import require
from relay.history.pg.partitions import Partitions
from relay.history.pg.writer import write
from relay.names import Names
from relay.settings import Settings

log = logging.getLogger(__name__)

DOWN = (psycopg.Error, RecordDown, redis.RedisError)  # waited out, never the end
CONSUMER_IDLE_MS = 86_400_000  # a consumer idle this long holding nothing is forgotten
STEPS_AT_ONCE = 10_000  # steps a transaction writes at most (and a batch holds, about)



@dataclass(frozen=True)
class Tuning:
    batch: int = 500  # entries per batch at most
    block_ms: int = 1_000  # the most a read waits for new entries
    claim_idle_ms: int = 60_000  # an entry held this long by another exporter is claimed
    claim_every_s: float = 5.0
    retention_every_s: float = 3_600.0  # partitions dropped past RELAY_HISTORY_DAYS
    backoff_max_s: float = 30.0


def consumer_name() -> str:
    """This process's name in the group: host and pid (a restarted exporter's entries are
    claimed by whoever runs once they are idle)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Exporter:
    def __init__(self, client: redis.Redis, settings: Settings, name: str | None = None,
                 tuning: Tuning = Tuning(), clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 connector: Callable[[], psycopg.Connection] | None = None) -> None:
        self.client = client
        self.settings = settings
        self.names = Names(settings.prefix)
        self.name = name or consumer_name()
        self.tuning = tuning
        self.clock = clock
        self.sleep = sleep
        self.connector = connector or (lambda: connect(settings.history_dsn, autocommit=True))
        self.ack_script: Any = client.register_script(ACK)
        self.partitions = Partitions()
        self.conn: psycopg.Connection | None = None
        self.held: list[tuple[str, dict[str, str]]] = []  # read, not yet committed
        self.claimed_at = -float("inf")
        self.retained_at = -float("inf")
        self.outage_since: float | None = None
        self.steps_per_entry = 1.0  # in the last batch: how many to read at once
        self.stopping = threading.Event()

    # -- one turn -------------------------------------------------------------------------

    def turn(self) -> int:
        """Export one batch (waiting up to ``block_ms`` for one); return its entries.
        Raises what is down (``DOWN``): the batch stays held for the next turn."""
        now = self.clock()
        if now - self.retained_at >= self.tuning.retention_every_s:
            self.retention(int(now * 1000))
        if self.held:  # written again after a failure: only what is still this one's
            self.held = self._still_held(self.held)
        if not self.held:
            self.held = self._next(now)
        if not self.held:
            return 0
        written = [entry_id for entry_id, fields in self.held if fields]
        empty = [entry_id for entry_id, fields in self.held if not fields]
        if empty:  # trimmed while held: lost, unless an exporter committed it before
            kept = committed(self._conn(), empty)
            written += [entry_id for entry_id in empty if entry_id in kept]
            empty = [entry_id for entry_id in empty if entry_id not in kept]
        try:
            self._write(self.held)
        except psycopg.DataError:  # one entry PostgreSQL refuses must not stop the rest
            refused = [entry for entry in self.held if entry[1] and not self._write_one(entry)]
            written = [entry_id for entry_id in written
                       if entry_id not in {entry_id for entry_id, _ in refused}]
            empty += [entry_id for entry_id, _ in refused]
        exported, lost = self.ack_script(
            keys=[self.names.history, self.names.history_export],
            args=[self.names.history_group, int(self.clock() * 1000), len(written),
                  *written, *empty])
        if int(lost):
            log.warning("history record: %d entries were trimmed from the stream while "
                        "held by an exporter: lost from the record", int(lost))
        count = len(self.held)
        self.held = []
        return count

    def _still_held(self, held: list[tuple[str, dict[str, str]]]
                    ) -> list[tuple[str, dict[str, str]]]:
        """The entries of ``held`` this exporter still holds (another may have claimed
        some while it waited: they are its now), their idle time reset so none is."""
        stream, group = self.names.history, self.names.history_group
        mine = {str(row["message_id"]) for row in self.client.xpending_range(
            stream, group, min=held[0][0], max=held[-1][0], count=len(held) + 1,
            consumername=self.name)}
        kept = [entry for entry in held if entry[0] in mine]
        if kept:
            self.client.xclaim(stream, group, self.name, 0, [e for e, _ in kept],
                               justid=True)
        return kept

    def _write(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Write ``entries``' steps, ``STEPS_AT_ONCE`` at most a transaction (an entry's
        steps in one)."""
        chunk: list[Step] = []
        total = 0
        for entry_id, fields in entries:
            found = steps_of(entry_id, fields) if fields else []
            if chunk and len(chunk) + len(found) > STEPS_AT_ONCE:
                write(self._conn(), chunk, self.settings.key_names, self.partitions)
                chunk = []
            chunk += found
            total += len(found)
        if chunk:
            write(self._conn(), chunk, self.settings.key_names, self.partitions)
        self.steps_per_entry = max(1.0, total / max(1, len(entries)))

    def count(self) -> int:
        """Entries to read at once: ``batch``, fewer when entries hold many steps (one
        request's accepted steps share an entry), so a batch holds about
        ``STEPS_AT_ONCE`` steps in memory at most."""
        return max(1, min(self.tuning.batch, int(STEPS_AT_ONCE / self.steps_per_entry)))

    def _write_one(self, entry: tuple[str, dict[str, str]]) -> bool:
        try:
            self._write([entry])
            return True
        except psycopg.DataError as exc:
            log.error("history record: entry %s refused by PostgreSQL, lost from the record: "
                      "%s", entry[0], hide(str(exc), self.settings.history_dsn))
            return False

    def _next(self, now: float) -> list[tuple[str, dict[str, str]]]:
        stream, group = self.names.history, self.names.history_group
        if now - self.claimed_at >= self.tuning.claim_every_s:
            self.claimed_at = now
            self.ensure_group()
            self.client.xautoclaim(stream, group, self.name, self.tuning.claim_idle_ms,
                                   "0-0", count=self.count(), justid=True)
        for start, block in (("0", None), (">", self.tuning.block_ms)):
            found: Any = self.client.xreadgroup(group, self.name, {stream: start},
                                                count=self.count(), block=block)
            entries = [(str(entry_id), dict(fields or {}))
                       for entry_id, fields in (found[0][1] if found else []) if entry_id]
            if entries:
                return entries
        return []

    def ensure_group(self) -> None:
        """The group, made reading from the stream's start ("0"): the steps the stream
        still holds when the first exporter starts join the record."""
        try:
            self.client.xgroup_create(self.names.history, self.names.history_group, id="0",
                                      mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _conn(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = self.connector()
            require(self.conn)
        return self.conn

    def forget_consumers(self, idle_ms: int) -> list[str]:
        """Take out of the group the exporters gone (a name per process: host-pid) that
        hold nothing and were not heard of for ``idle_ms``; return their names."""
        try:
            found = self.client.xinfo_consumers(self.names.history, self.names.history_group)
        except redis.ResponseError:  # no group yet
            return []
        gone = [str(c["name"]) for c in found if str(c["name"]) != self.name
                and not int(c["pending"]) and int(c["idle"]) >= idle_ms]
        for name in gone:
            self.client.xgroup_delconsumer(self.names.history, self.names.history_group, name)
        return gone

    def close(self) -> None:
        """Close the connection to PostgreSQL (held entries stay held in the group)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def retention(self, now_ms: int) -> list[str]:
        """Drop partitions past RELAY_HISTORY_DAYS and make the next days'."""
        conn = self._conn()
        dropped = self.partitions.drop_older(conn, self.settings.history_days, now_ms)
        self.partitions.ahead(conn, now_ms)
        self.forget_consumers(CONSUMER_IDLE_MS)
        self.retained_at = now_ms / 1000
        return dropped

    # -- the loop -------------------------------------------------------------------------

    def run(self, turns: int | None = None) -> None:
        """Export until stopped (or ``turns`` turns), waiting out what is down."""
        self.ensure_group_when_up()
        done = 0
        while not self.stopping.is_set() and (turns is None or done < turns):
            retrying = Retrying(
                retry=retry_if_exception_type(DOWN), reraise=True,
                stop=lambda _: self.stopping.is_set(),
                wait=wait_random_exponential(multiplier=0.5, max=self.tuning.backoff_max_s),
                sleep=self.sleep, before_sleep=self._down)
            try:
                for attempt in retrying:
                    with attempt:
                        self.turn()
            except DOWN:
                if self.stopping.is_set():
                    return
                raise
            if self.outage_since is not None:
                log.info("history record: writing again after %.0f s",
                         self.clock() - self.outage_since)
                self.outage_since = None
            done += 1

    def ensure_group_when_up(self) -> None:
        try:
            self.ensure_group()
        except redis.RedisError:
            pass  # the first claim makes it

    def _down(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, psycopg.Error | RecordDown) and self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None
        if self.outage_since is None:
            self.outage_since = self.clock()
            log.warning("history record: cannot write (%s); the stream holds the steps, "
                        "retrying with backoff", hide(str(exc), self.settings.history_dsn))
