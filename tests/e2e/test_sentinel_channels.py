"""End to end: the channel worker (RQ's worker, its scheduler and the dispatcher) against
Redis under Sentinel goes on after a SENTINEL FAILOVER and after a kill -9 of the
primary: a webhook channel hears of events accepted after each (its first tries failed,
so RQ's scheduler requeues them on the new primary)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from relay.stack.processes import wait_until
from relay.stack.sentinels import SentinelGroup
from tests.conftest import trigger
from tests.receivers import WebhookReceiver


def start_relay(make_stack, group: SentinelGroup, hooks: WebhookReceiver, tmp_path: Path,
                channel_extra: str = "") -> tuple[Any, Any]:
    """The ingress and a channel worker on ``group``, every event heard by a webhook
    channel; (stack, channel worker)."""
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: hook
    type: webhook
    url: {hooks.url}/hook{channel_extra}
routes:
  - name: all
    keys: [key-1]
    channels: [hook]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, redis_url=group.url, RELAY_ROUTES_FILE=str(routes),
                       RELAY_CHANNEL_RETRY_BASE_S="1")
    stack.start_ingress()
    return stack, stack.start_channel_worker()


def heard(hooks: WebhookReceiver, n: int) -> bool:
    return any(f"event-{n}" in str(body) for body in hooks.taken("/hook"))


def post(stack: Any, n: int) -> None:
    wait_until(lambda: stack.post(trigger(f"event-{n}", dedup_key=f"e{n}")).status_code == 202,
               30, f"event {n} accepted")


def test_the_channel_worker_and_rq_go_on_after_a_failover(
        make_stack, group: SentinelGroup, hooks: WebhookReceiver, tmp_path: Path) -> None:
    stack, worker = start_relay(make_stack, group, hooks, tmp_path)
    post(stack, 0)
    wait_until(lambda: heard(hooks, 0), 30, "the channel to hear of event 0")
    hooks.script("/hook", (500, {}, "down"))  # the next message's first try fails:
    first = group.primary()  # RQ's scheduler must bring it back (a retry)
    group.failover(pause_ms=5000)
    post(stack, 1)
    wait_until(lambda: heard(hooks, 1), 60, "event 1 after SENTINEL FAILOVER (a retry)")
    hooks.script("/hook", (500, {}, "down"))
    second = group.primary()
    group.kill_primary()
    group.wait_failover(second, 30)
    post(stack, 2)
    wait_until(lambda: heard(hooks, 2), 60, "event 2 after the kill -9 of the primary")
    assert worker.alive() and group.primary() != second != first
    assert hooks.tries("/hook") >= 5  # events 1 and 2 each tried twice


def test_the_channel_worker_outlives_a_primary_dying_while_a_job_runs(
        make_stack, group: SentinelGroup, hooks: WebhookReceiver, tmp_path: Path) -> None:
    """A job still running when the primary dies: RQ's bookkeeping after it fails on the
    dead primary, and RQ's worker "quits" (an unhandled exception); the channel worker
    must go on with the new primary, not exit."""
    gate, arrived = threading.Event(), threading.Event()
    answer = hooks.answer

    def held(path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], str]:
        if b"event-0" in raw and not gate.is_set():
            arrived.set()
            gate.wait(30)  # bounded: the job runs until the primary is dead
        return answer(path, headers, raw)

    hooks.answer = held  # type: ignore[method-assign]
    try:
        stack, worker = start_relay(make_stack, group, hooks, tmp_path,
                                    "\n    timeout_s: 30")
        post(stack, 0)
        wait_until(arrived.is_set, 30, "the channel's job to be running")
        first = group.primary()
        group.kill_primary()
        gate.set()  # the job ends while the primary is dead and not yet replaced
        group.wait_failover(first, 30)
        post(stack, 1)
        wait_until(lambda: heard(hooks, 1) or not worker.alive(), 60,
                   "event 1 after the kill -9")
        assert worker.alive(), stack.logs_text()[-6000:]
        assert heard(hooks, 1)
    finally:
        gate.set()
