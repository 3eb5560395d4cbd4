"""What a key's delivery writes down beside the event itself (``worker.delivery``): the
key's figures and last error, each event's story in the history (``relay.history``), the
outcome a test event's sender waits for, and the dead letter's record. None of it may stop
a delivery: Redis full refuses what adds memory, and the figure is skipped."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from relay.errors import KeyBlocked, Rejected, RetryLater
from relay.history import History
from relay.names import NOTED_PREFIX, Names
from relay.store import Record, now_ms

log = logging.getLogger(__name__)


@dataclass
class Notes:
    client: redis.Redis
    names: Names
    history: History
    kid: str
    label: str  # the key's name, as logs show it

    @property
    def stats(self) -> str:
        return self.names.stats(self.kid)

    def retry(self, record: Record, attempt: int, error: BaseException, wait: float) -> None:
        """A send that PagerDuty (or the wire) asked to try again: logged, told in the
        story, counted; a blocked key's reason kept for status."""
        blocked = isinstance(error, KeyBlocked)
        dedup_key = record.event.get("dedup_key")
        if isinstance(error, KeyBlocked):
            log.error(
                "key %s is blocked: PagerDuty answered %s for %s dedup_key=%s: %s. "
                "Its events are kept; trying again in %.0fs. %s",
                self.label, error, record.action, dedup_key, error.reply[:200], wait,
                error.hint,
            )
        else:
            log.warning("retrying %s dedup_key=%s key=%s: %s; attempt %d, next in %.1fs",
                        record.action, dedup_key, self.label, error, attempt, wait)
        self.story(record, "attempt", o="blocked" if blocked else "retry later",
                   e=str(error), st=getattr(error, "status", None),
                   r=getattr(error, "reply", "")[:200], w=round(wait, 2))
        with self.unless_full(), self.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(self.stats, "retried", 1)
            if throttled(error):
                pipe.hincrby(self.stats, "throttled", 1)
            pipe.hset(self.stats, mapping=error_fields(error))
            if isinstance(error, KeyBlocked):
                pipe.hset(self.stats, mapping={"blocked": f"{error}: {error.hint}",
                                               "blocked_at": now_ms()})
            pipe.execute()

    def letter(self, raw: str, error: Rejected) -> tuple[str, str]:
        """A dead letter's id and record for ``raw``, which PagerDuty called invalid."""
        dead_id = f"{now_ms():x}-{uuid.uuid4().hex[:8]}"
        return dead_id, json.dumps({
            "id": dead_id, "key_id": self.kid, "routing_key": self.label,
            "failed_at": now_ms(), "reason": str(error), "status": error.status,
            "reply": error.reply, "raw": raw})

    def dead(self, record: Record | None, error: Rejected, dead_id: str) -> None:
        """After the dead letter was stored: its story, the key's last error, the log."""
        if record is not None:
            self.outcome(record, f"dead-lettered: {error} {error.reply[:200]}")
            self.story(record, "dead", e=str(error), st=error.status, r=error.reply[:200],
                       dl=dead_id)
        with self.unless_full():
            self.client.hset(self.stats, mapping=error_fields(error))
        log.error("dead-lettered %s dedup_key=%s key=%s: %s %s (id %s)",
                  record.action if record else "event",
                  record.event.get("dedup_key") if record else None,
                  self.label, error, error.reply[:200], dead_id)

    def outcome(self, record: Record, outcome: str) -> None:
        """Note what became of an event that asks for it (``NOTED_PREFIX``)."""
        dedup_key = str(record.event.get("dedup_key", ""))
        if dedup_key.startswith(NOTED_PREFIX):
            with self.unless_full():
                self.client.set(self.names.outcome(dedup_key, record.action), outcome,
                                ex=3600)

    def story(self, record: Record, step: str, **fields: Any) -> None:
        """A step of the event's story; none for events stored before ids."""
        if record.id:
            with self.unless_full():
                self.history.note(step, 0, i=record.id, d=record.event.get("dedup_key", ""),
                                  a=record.action, k=self.label, **fields)

    @contextmanager
    def unless_full(self) -> Iterator[None]:
        """Figures and notes are skipped when Redis is full (it refuses what adds memory);
        delivery goes on."""
        try:
            yield
        except redis.exceptions.OutOfMemoryError as exc:
            log.warning("key %s: a figure was not recorded: %s", self.label, exc)


def throttled(error: BaseException) -> bool:
    """PagerDuty's 429: the key's pace is cut (``relay.limiter``)."""
    return isinstance(error, RetryLater) and error.status == 429


def error_fields(error: BaseException) -> dict[Any, Any]:
    return {"last_error": str(error), "last_error_at": now_ms()}
