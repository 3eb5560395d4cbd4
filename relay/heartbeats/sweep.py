"""Checks gone: a check taken out of the routes file keeps nothing for ever. Its state,
pings and ping token would stay, a later check of that name would take its token, and
an incident it had open would never close (no sender may close a ``heartbeat:``
incident). So each evaluation round looks at a slice of the names something is kept for
(``Names.heartbeat_named``, SSCAN: bounded work however many checks) and notes those of
no check (neither in the routes file of the process evaluating nor a run-time check,
read again before deciding: one just added is not gone). A name noted ``GONE_AFTER_S``
ago and never found a check since is forgotten as ``pd-relay heartbeat remove`` does:
its open incident resolved (reason ``removed``), its state, pings and token dropped. A
process whose routes file has the check clears the note, so a rolling change of the
routes file (channel workers with the old and the new file, the lease going from one to
the other) that ends within the delay forgets nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from relay.heartbeats.store import Heartbeats

log = logging.getLogger(__name__)
GONE_AFTER_S = 600.0
SLICE = 50  # names a round looks at (SSCAN's COUNT): 10,000 in about 200 rounds, 0.04 ms


class Sweep:
    def __init__(self, store: Heartbeats, is_check: Callable[[str], bool], count: int,
                 after_s: float = GONE_AFTER_S) -> None:
        self.store = store
        self.is_check = is_check  # reads the run-time checks again on a miss
        self.count = count
        self.after_ms = int(after_s * 1000)
        self._cursor = 0

    def step(self) -> list[str]:
        """Look at the next slice; returns the names forgotten."""
        names = self.store.names
        with self.store.client.pipeline(transaction=False) as pipe:
            pipe.sscan(names.heartbeat_named, self._cursor, count=self.count)
            pipe.exists(names.heartbeat_gone)  # some name noted (by any process)
            (cursor, found), noted = pipe.execute()
        self._cursor = int(cursor)
        checks: list[str] = []
        gone: list[str] = []
        for name in map(str, found):
            (checks if self.is_check(name) else gone).append(name)
        if not gone and not (checks and noted):
            return []
        _, forgotten = self.store.sweep_script(
            keys=[names.heartbeat_gone, names.heartbeats, names.heartbeat_named,
                  names.heartbeat_due, names.heartbeat_tokens, names.heartbeat_pages],
            args=[self.store.now_arg(), names.heartbeat(""), names.heartbeat_pings(""),
                  self.after_ms, len(checks), *checks, *gone])
        for name in map(str, forgotten):
            log.warning("heartbeat %s: no such check for %.0f s (taken out of the routes "
                        "file): forgotten as `heartbeat remove` does (an open incident "
                        "resolved, reason removed)", name, self.after_ms / 1000)
        return [str(name) for name in forgotten]
