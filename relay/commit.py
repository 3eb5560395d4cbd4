"""Group commit: concurrent requests share one Redis command, and none can wedge the rest.

Each request's events must be stored before its 202. A request hands its batch in and
waits for the verdict on its own batch. Whichever waiting request thread finds the
writer's role free takes it: it stores everything handed in so far in one command, sets
each request's verdict, and frees the role. So an idle node stores a batch in its own
thread at once (no hand-over to another thread, which costs more than the store under
load), and under load many requests share a round trip.

The store is given each request's batch apart (it stores or refuses each whole: a
request that would overfill a queue) and answers for every item, in order.

No thread is ever handed the role: it is free or held, and its holder frees it in a
``finally``. A request that gives up waiting therefore leaves nothing behind (the first
design handed the lead to the next waiter, even one that had given up, and the node
answered 503 until restarted).

What a request is told is the truth about its own events:
- stored: the command that carried them succeeded;
- ``NotStored``: no command took them up within the request's timeout; they are
  withdrawn, so they can never be stored after the request was told 503;
- ``NoVerdict``: the command carrying them gave no answer within ``verdict_s``;
- ``NotReplicated``: stored, but the command's one WAIT confirmed too few replicas;
- the store's own error: the command carrying them failed. A failure that is not
  Redis's (a bug, a value that could not be encoded) is retried one request at a time,
  so it fails only the request that caused it.
One ambiguity remains (docs/DESIGN.md): when Redis does not answer within the client's
timeout, it may still run the command after the request was told 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis

from relay.errors import NotReplicated

log = logging.getLogger(__name__)

Batch = Sequence[Any]


class NotStored(TimeoutError):
    """No command took the batch up in time; nothing of it was stored."""


class NoVerdict(TimeoutError):
    """The command carrying the batch has not answered in time; it may yet be stored."""


class _Request:
    __slots__ = ("batch", "done", "taken", "error", "result")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.done = False
        self.taken = False
        self.error: BaseException | None = None
        self.result: Sequence[Any] = ()


class GroupCommit:
    def __init__(
        self,
        store: Callable[[list[Batch]], Sequence[Any] | None],
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
        self.writing = False
        self.busy_since: float | None = None  # when the store call under way began

    def enqueue(self, batch: Batch, timeout_s: float = 30.0) -> Sequence[Any]:
        """Store ``batch``; once stored, return what the store said of each of its items.
        Raise why it was not stored (or may not be)."""
        request = _Request(batch)
        deadline = self.clock() + timeout_s
        with self.cond:
            self.pending.append(request)
            while not request.done:
                if not self.writing:
                    self._write()
                    continue
                left = deadline - self.clock()
                if left > 0:
                    self.cond.wait(left)
                elif not request.taken:
                    self.pending.remove(request)
                    raise NotStored("the event store did not take the events in time")
                elif not self.cond.wait_for(lambda: request.done, self.verdict_s):
                    raise NoVerdict("no answer from the event store; the events may be stored")
        if request.error is not None:
            raise request.error
        return request.result

    def stalled(self, limit_s: float) -> bool:
        """True while one store call has been under way for more than ``limit_s``."""
        since = self.busy_since
        return since is not None and self.clock() - since > limit_s

    def _write(self) -> None:
        """Hold the writer's role for one command (lock held on entry and on exit)."""
        group = [self.pending.popleft()]
        size = len(group[0].batch)
        while self.pending and size + len(self.pending[0].batch) <= self.max_events:
            size += len(self.pending[0].batch)
            group.append(self.pending.popleft())
        for request in group:
            request.taken = True
        self.writing, self.busy_since = True, self.clock()
        self.cond.release()
        try:
            self._store(group)
        finally:
            self.cond.acquire()
            self.writing, self.busy_since = False, None
            for request in group:
                request.done = True
            self.cond.notify_all()

    def _store(self, group: list[_Request]) -> None:
        try:
            results = self.store([request.batch for request in group]) or ()
        except (redis.RedisError, NotReplicated) as exc:  # a verdict on the whole command
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
