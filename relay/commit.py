"""Group commit: one writer thread stores what concurrent requests hand it, together.

Each request's events must be stored before its 202. A request thread hands its batch
to the node's one writer thread and waits for the verdict on its own batch (a future per
request). The writer stores everything handed in since its last call in one command, so
under load many requests share a round trip, and an idle node stores a batch at once.

What a request is told is the truth about its own events:
- stored: the command that carried them succeeded;
- ``NotStored``: the writer never took them up within the request's timeout; they are
  withdrawn, so they can never be stored after the request was told 503;
- the store's own error: the command carrying them failed. A failure that is not
  Redis's (a bug, a value that could not be encoded) is retried one request at a time,
  so it fails only the request that caused it.
One ambiguity remains (docs/DESIGN.md): when Redis does not answer within the client's
timeout, it may still run the command after the request was told 503.

A stall of the writer (a slow Redis, a paused process) holds up only the requests that
wait during it: nothing is left behind that could stop later requests from being stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis

log = logging.getLogger(__name__)

Batch = Sequence[Any]


class NotStored(TimeoutError):
    """The writer did not take the batch up in time; nothing of it was stored."""


class NoVerdict(TimeoutError):
    """The command carrying the batch has not answered in time; it may yet be stored."""


class _Request:
    __slots__ = ("batch", "done", "taken", "error", "result")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.done = threading.Event()
        self.taken = False
        self.error: BaseException | None = None
        self.result: Sequence[Any] = ()


class GroupCommit:
    def __init__(
        self,
        store: Callable[[Batch], Sequence[Any] | None],
        max_events: int = 2000,
        verdict_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_events = max_events
        self.verdict_s = verdict_s  # how long a taken batch waits on for its command
        self.clock = clock
        self.cond = threading.Condition()
        self.pending: deque[_Request] = deque()
        self.busy_since: float | None = None  # when the store call under way began
        self._writer: threading.Thread | None = None

    def enqueue(self, batch: Batch, timeout_s: float = 30.0) -> Sequence[Any]:
        """Store ``batch``; once stored, return what the store said of each of its items.
        Raise why it was not stored (or may not be)."""
        request = _Request(batch)
        with self.cond:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._run, name="commit", daemon=True)
                self._writer.start()
            self.pending.append(request)
            self.cond.notify()
        if not request.done.wait(timeout_s):
            with self.cond:
                if not request.taken:
                    self.pending.remove(request)
                    raise NotStored("the event store did not take the events in time")
            # Taken: the command carrying them is under way, bounded by the client's own
            # timeouts. Its verdict is the truth; wait for it a while longer.
            if not request.done.wait(self.verdict_s):
                raise NoVerdict("no answer from the event store; the events may be stored")
        if request.error is not None:
            raise request.error
        return request.result

    def stalled(self, limit_s: float) -> bool:
        """True while one store call has been under way for more than ``limit_s``."""
        since = self.busy_since
        return since is not None and self.clock() - since > limit_s

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
                group = [self.pending.popleft()]
                size = len(group[0].batch)
                while self.pending and size + len(self.pending[0].batch) <= self.max_events:
                    size += len(self.pending[0].batch)
                    group.append(self.pending.popleft())
                for request in group:
                    request.taken = True
                self.busy_since = self.clock()
            try:
                self._store(group)
            finally:
                self.busy_since = None
                for request in group:
                    request.done.set()

    def _store(self, group: list[_Request]) -> None:
        try:
            results = self.store([item for request in group for item in request.batch]) or ()
        except redis.RedisError as exc:  # Redis's verdict on the whole command
            for request in group:
                request.error = exc
        except Exception as exc:  # each request's own thread raises it
            if len(group) == 1:
                log.error("could not store a request's events: %r", exc)
                group[0].error = exc
            else:  # a command that fails before Redis runs it stores nothing: one by one
                for request in group:
                    self._store([request])
        else:
            at = 0
            for request in group:
                request.result = results[at:at + len(request.batch)]
                at += len(request.batch)
