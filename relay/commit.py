"""Group commit: concurrent requests share one Redis command.

Each request's events must be stored before its 202. Under load, many request threads
wait on the round trip to Redis at once; here one of them (the leader) stores all the
events queued so far in one command, then hands the lead to the next waiting request.
An idle node stores each request's events at once: nothing waits for a batch to fill.
A failed command fails every request it carried (each answers 503), so nothing is
answered 202 unless its own events are stored.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

Batch = Sequence[tuple[str, str]]


class _Request:
    __slots__ = ("batch", "done", "lead", "error")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.done = False
        self.lead = False
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, store: Callable[[Batch], object], max_events: int = 2000) -> None:
        self.store = store
        self.max_events = max_events
        self.cond = threading.Condition()
        self.queue: deque[_Request] = deque()
        self.leading = False

    def enqueue(self, batch: Batch, timeout_s: float = 30.0) -> None:
        """Store ``batch``; return once stored, or raise what the store raised."""
        request = _Request(batch)
        with self.cond:
            self.queue.append(request)
            if not self.leading:
                self.leading = request.lead = True
            while not request.done:
                if request.lead:
                    self._lead()
                elif not self.cond.wait(timeout_s):
                    raise TimeoutError("no answer from the event store")
        if request.error is not None:
            raise request.error

    def _lead(self) -> None:
        """Store one group (lock held on entry and exit, released while storing)."""
        group: list[_Request] = []
        size = 0
        while self.queue and (not group or size + len(self.queue[0].batch) <= self.max_events):
            size += len(self.queue[0].batch)
            group.append(self.queue.popleft())
        error: BaseException | None = None
        self.cond.release()
        try:
            self.store([item for request in group for item in request.batch])
        except BaseException as exc:  # noqa: B036 - handed to each request's own thread
            error = exc
        finally:
            self.cond.acquire()
        for request in group:
            request.error, request.done, request.lead = error, True, False
        if self.queue:
            self.queue[0].lead = True
        else:
            self.leading = False
        self.cond.notify_all()
