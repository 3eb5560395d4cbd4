"""The review's attacks on the heartbeats' state machine and pages (issue 28): each test
failed before the fix that follows it. On fakeredis and a real redis-server; the clock
is the test's (it stands for Redis's)."""

from __future__ import annotations

import redis

from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check, Page
from relay.heartbeats.store import Heartbeats
from relay.routes.config import RoutesFile
from tests.heartbeat_fixtures import (
    NAMES,
    Clock,
    clock,
    period_check,
    real_redis,
    redis_client,
    store,
)

__all__ = ["clock", "real_redis", "redis_client", "store"]  # fixtures
CHECK = period_check("backup", period_s=60, grace_s=30)


class Sent:
    def __init__(self) -> None:
        self.pages: list[tuple[str, str, int, str]] = []

    def __call__(self, page: Page, check: Check) -> None:
        self.pages.append((page.name, page.action, page.outage, page.reason))


def evaluator(client: redis.Redis, clock: Clock, sent: Sent, catalog: Catalog,
              **options: object) -> Evaluator:
    return Evaluator(client, NAMES, catalog, sent, clock=clock,  # type: ignore[arg-type]
                     watch_ingress=False, gap_s=1e6, **options)


def test_a_page_of_a_run_time_check_the_catalog_has_not_read_yet_is_sent(
        redis_client: redis.Redis, store: Heartbeats, clock: Clock) -> None:
    # a worker's first rounds, or the 2 s after `pd-relay heartbeat add`: the evaluator's
    # catalog has not read the run-time check the ingress already knows and pinged
    runtime = Check("nightly", grace_s=30, period_s=60, keys=("ops",), origin="cli")
    sent = Sent()
    ev = evaluator(redis_client, clock, sent, Catalog(RoutesFile(), store))
    ev.round()
    assert store.add(runtime)
    store.ping(runtime, "fail")
    ev.round()
    assert sent.pages == [("nightly", "trigger", 1, "fail")]

