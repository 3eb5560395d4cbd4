"""The heartbeat checks as the ingress sees them (issue 28): core's ``Catalog`` (the routes
file's checks and the run-time ones, read again every few seconds in the background)
following the routes file in force (a SIGHUP's new file takes effect at the next read),
and the ingress's liveness mark, set on the same beat: absent, the evaluator knows pings
could not arrive and gives every check one grace from the ingress's return."""

from __future__ import annotations

import logging
import threading

import redis

from relay.heartbeats.catalog import REFRESH_S, Catalog
from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.routes.policy import Policy

log = logging.getLogger(__name__)
MARK_TTL_S = 15.0  # the liveness mark's life: the evaluator's bound of a gap


class Following:
    def __init__(self, policy: Policy, heartbeats: Heartbeats) -> None:
        self.policy = policy
        self.heartbeats = heartbeats
        self.routes = policy.routes
        self.catalog = Catalog(policy.routes, heartbeats)
        self.read = False  # the run-time checks read once: until then no name is unknown

    def get(self, name: str) -> Check | None:
        return self.catalog.get(name)

    def watchdogs(self) -> list[Check]:
        return self.catalog.watchdogs()

    def refresh(self) -> None:
        """Read the run-time checks again, with the routes file now in force (RedisError
        passes: the checks read last are kept)."""
        routes = self.policy.routes
        catalog = self.catalog if routes is self.routes else Catalog(routes, self.heartbeats)
        catalog.refresh()
        self.catalog, self.routes = catalog, routes
        self.read = True

    def follow(self, stop: threading.Event, every: float = REFRESH_S) -> threading.Thread:
        """Every ``every`` seconds until ``stop``: set the liveness mark, read the checks."""

        def run() -> None:
            while True:
                try:
                    self.heartbeats.mark_ingress(MARK_TTL_S)
                    self.refresh()
                except redis.RedisError as exc:
                    log.debug("heartbeat checks not read, or the ingress's mark not set: %s",
                              type(exc).__name__)
                except Exception:  # the mark must go on: without it no check goes down
                    log.exception("heartbeat checks not read")
                if stop.wait(every):
                    return

        thread = threading.Thread(target=run, name="heartbeat-checks", daemon=True)
        thread.start()
        return thread
