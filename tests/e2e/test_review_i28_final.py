"""End to end (last review of issue 28): the heartbeats' evaluator in a channel worker
on Redis under Sentinel goes on after a SENTINEL FAILOVER, and after a kill -9 of the
primary: each outage, before and after, is paged once (trigger, resolve, in order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.routes.config import load
from relay.stack.processes import wait_until
from relay.stack.sentinels import SentinelGroup

NAMES = Names("pdr")


def pages(stack: Any, action: str) -> list[dict[str, Any]]:
    return [e for e in stack.delivered() if e["dedup_key"] == "heartbeat:backup"
            and e["event_action"] == action]


def ping(group: SentinelGroup, check: Check) -> bool:
    """A success ping on the primary now (False while there is none to write to)."""
    try:
        store = Heartbeats(group.node(group.primary()[1]), NAMES)
        store.ping(check, "success", b"ok", by="test")
        return True
    except (redis.RedisError, RuntimeError):
        return False


def rounds_after(group: SentinelGroup, seconds: float) -> None:
    """Wait until the evaluation has run ``seconds`` past now on the primary's clock."""
    def stamped() -> bool:
        try:
            client = group.node(group.primary()[1])
            return int(client.get(NAMES.heartbeat_clock) or 0) > start + seconds * 1000
        except (redis.RedisError, RuntimeError):
            return False
    start = group.node(group.primary()[1]).time()[0] * 1000
    wait_until(stamped, seconds + 20, f"evaluation rounds over {seconds} s")


@pytest.mark.parametrize("how", ["failover", "kill -9"])
def test_the_evaluator_goes_on_after_a_failover_and_pages_each_outage_once(
        make_stack, group: SentinelGroup, tmp_path: Path, how: str) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text("""
heartbeats:
  - name: backup
    period: 2s
    grace: 1s
    keys: [key-1]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, redis_url=group.url, RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    stack.start_ingress()  # its liveness mark: without it no check goes down
    stack.start_worker(0)
    stack.start_channel_worker()
    [check] = load(routes, ("key-1",)).heartbeats
    wait_until(lambda: ping(group, check), 30, "a ping stored")
    wait_until(lambda: pages(stack, "trigger"), 30, "the first outage's trigger")
    wait_until(lambda: ping(group, check), 30, "a ping stored")
    wait_until(lambda: pages(stack, "resolve"), 30, "the first outage's resolve")
    if how == "failover":  # the check may go down meanwhile: paged, or not yet
        group.failover(pause_ms=5000)
    else:
        group.wait_failover(("127.0.0.1", group.kill_primary()))
    wait_until(lambda: ping(group, check), 30, "a ping stored on the new primary")
    wait_until(lambda: len(pages(stack, "resolve")) == len(pages(stack, "trigger")), 30,
               "every outage so far resolved")
    before = len(pages(stack, "trigger"))
    wait_until(lambda: len(pages(stack, "trigger")) > before, 60,
               "an outage after the failover paged")
    rounds_after(group, 3)
    order = [e["event_action"] for e in stack.delivered()
             if e["dedup_key"] == "heartbeat:backup"]
    assert order == ["trigger", "resolve"] * before + ["trigger"], order
