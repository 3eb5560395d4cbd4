"""Every check by name: the routes file's and those added at run time (``pd-relay
heartbeat add``, kept in Redis), read again every ``REFRESH_S`` seconds in the background
(as the maintenance windows: relay.routes.windows), so no ping waits on Redis for them.
A run-time check may not take a routes-file check's name (``add`` refuses it; one stored
before the file gained that name is ignored, and said)."""

from __future__ import annotations

import logging
import threading

import redis

from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.routes.config import RoutesFile

log = logging.getLogger(__name__)
REFRESH_S = 2.0


class Catalog:
    def __init__(self, routes: RoutesFile, heartbeats: Heartbeats | None) -> None:
        self.heartbeats = heartbeats
        self._file = {check.name: check for check in routes.heartbeats}
        self._checks: dict[str, Check] = dict(self._file)
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read the run-time checks again (RedisError passes: the last ones are kept)."""
        stored = self.heartbeats.stored_checks() if self.heartbeats is not None else []
        found = dict(self._file)
        for check in stored:
            if check.name in found:
                log.warning("heartbeat %s: a run-time check of a routes-file check's name is "
                            "ignored (pd-relay heartbeat remove %s)", check.name, check.name)
                continue
            found[check.name] = check
        with self._lock:
            self._checks = found

    def get(self, name: str) -> Check | None:
        return self._checks.get(name)

    def all(self) -> list[Check]:
        """Every check, the routes file's first, then the run-time ones by name."""
        checks = self._checks
        return list(checks.values())

    def watchdogs(self) -> list[Check]:
        """The checks an adapter's alert may ping (those with watchdog matchers)."""
        return [check for check in self._checks.values() if check.watchdog]

    def follow(self, stop: threading.Event, refresh_s: float = REFRESH_S) -> threading.Thread:
        """Refresh every ``refresh_s`` seconds until ``stop`` is set."""

        def run() -> None:
            while True:
                try:
                    self.refresh()
                except redis.RedisError as exc:
                    log.debug("run-time heartbeat checks not read: %s", type(exc).__name__)
                if stop.wait(refresh_s):
                    return

        thread = threading.Thread(target=run, name="heartbeat-checks", daemon=True)
        thread.start()
        return thread
