"""End to end: the channel worker (RQ's worker, its scheduler and the dispatcher) against
Redis under Sentinel goes on after a SENTINEL FAILOVER and after a kill -9 of the
primary: a webhook channel hears of events accepted after each (its first tries failed,
so RQ's scheduler requeues them on the new primary)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.stack.processes import wait_until
from relay.stack.sentinels import SentinelGroup
from tests.conftest import trigger
from tests.receivers import WebhookReceiver


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def test_the_channel_worker_and_rq_go_on_after_a_failover(
        make_stack, hooks: WebhookReceiver, tmp_path: Path) -> None:
    group = SentinelGroup(tmp_path / "group", tmp_path / "group-logs",
                          min_replicas_to_write=1)
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: hook
    type: webhook
    url: {hooks.url}/hook
routes:
  - name: all
    keys: [key-1]
    channels: [hook]
""")
    routes.chmod(0o600)
    try:
        group.start()
        stack = make_stack(keys=1, redis_url=group.url, RELAY_ROUTES_FILE=str(routes),
                           RELAY_CHANNEL_RETRY_BASE_S="1")
        stack.start_ingress()
        worker = stack.start_channel_worker()

        def heard(n: int) -> bool:
            return sum(1 for body in hooks.taken("/hook") if f"event-{n}" in str(body)) > 0

        def post(n: int) -> None:
            wait_until(lambda: stack.post(trigger(f"event-{n}", dedup_key=f"e{n}"))
                       .status_code == 202, 30, f"event {n} accepted")

        post(0)
        wait_until(lambda: heard(0), 30, "the channel to hear of event 0")
        hooks.script("/hook", (500, {}, "down"))  # the next message's first try fails:
        first = group.primary()  # RQ's scheduler must bring it back (a retry)
        group.failover(pause_ms=5000)
        post(1)
        wait_until(lambda: heard(1), 60, "event 1 after SENTINEL FAILOVER (a retry)")
        hooks.script("/hook", (500, {}, "down"))
        second = group.primary()
        group.kill_primary()
        group.wait_failover(second, 30)
        post(2)
        wait_until(lambda: heard(2), 60, "event 2 after the kill -9 of the primary")
        assert worker.alive() and group.primary() != second != first
        assert hooks.tries("/hook") >= 5  # events 1 and 2 each tried twice
    finally:
        group.stop()
