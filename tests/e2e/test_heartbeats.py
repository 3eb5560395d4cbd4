"""End to end: heartbeats' pages and resolves with real processes (redis-server, ingress,
worker, channel workers evaluating the checks, the PagerDuty simulator). A check expects
a ping every 2 s with 1 s of grace; it is pinged once (through the store, as the
ingress's ``/ping`` does: its own tests are the ingress's), then left silent. The test
also stands in for the ingress's liveness mark (``Names.heartbeat_ingress``: without it
no check goes down, as no ping could have arrived)."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.routes.config import load
from relay.stack.loopback import LoopbackStack
from relay.stack.processes import wait_until

NAMES = Names("pdr")


@pytest.fixture
def relay(make_stack, tmp_path: Path) -> Iterator[tuple[LoopbackStack, Check]]:
    routes = tmp_path / "routes.yml"
    routes.write_text("""
heartbeats:
  - name: backup
    period: 2s
    grace: 1s
    severity: error
    keys: [key-2]
""")
    stack = make_stack(keys=2, RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_worker(1)
    [check] = load(routes, ("key-1", "key-2")).heartbeats
    store = Heartbeats(stack.redis.client(), NAMES)
    stop = threading.Event()

    def mark() -> None:  # as each ingress node does every few seconds
        while True:
            store.mark_ingress(5)
            if stop.wait(1):
                return

    marking = threading.Thread(target=mark, daemon=True)
    marking.start()
    yield stack, check
    stop.set()
    marking.join(5)


def ping(stack: LoopbackStack, check: Check, signal: str = "success") -> None:
    Heartbeats(stack.redis.client(), NAMES).ping(check, signal, b"backup done\n", by="test")


def pages(stack: LoopbackStack, action: str) -> list[dict[str, Any]]:
    return [e for e in stack.delivered() if e["dedup_key"] == "heartbeat:backup"
            and e["event_action"] == action]


def rounds_after(stack: LoopbackStack, seconds: float) -> None:
    """Wait until the evaluation has run ``seconds`` past now on Redis's clock (its
    stamp, Names.heartbeat_clock): any page it would send by then is decided."""
    client = stack.redis.client()
    now_ms = client.time()[0] * 1000
    wait_until(lambda: int(client.get(NAMES.heartbeat_clock) or 0) > now_ms + seconds * 1000,
               seconds + 10, f"evaluation rounds over {seconds} s")


def test_a_silent_check_pages_once_and_its_ping_resolves_it(relay) -> None:
    stack, check = relay
    stack.start_channel_worker()
    ping(stack, check)
    [trigger] = wait_until(lambda: pages(stack, "trigger"), 20, "the trigger at PagerDuty")
    assert trigger["routing_key"] == stack.keys[1]
    assert trigger["summary"] == "Heartbeat backup is down"  # 202: PagerDuty took it whole
    details = trigger["custom_details"]
    assert details["check"] == "backup" and details["reason"] == "missed"
    assert details["last_body"] == "backup done\n"
    assert details["late_by_s"] >= 1.0
    rounds_after(stack, 3)
    assert len(pages(stack, "trigger")) == 1  # one incident for the outage
    ping(stack, check)
    pinged = datetime.fromtimestamp(stack.redis.client().time()[0], UTC)
    wait_until(lambda: pages(stack, "resolve"), 20, "the resolve at PagerDuty")
    order = [e["event_action"] for e in stack.delivered() if e["dedup_key"] == "heartbeat:backup"]
    assert order == ["trigger", "resolve"]
    story = stack.cli("trace", "heartbeat:backup")
    assert story.returncode == 0, story.stderr
    text = story.stdout
    # up, unless the trace came after the next deadline (2 s + 1 s of grace: a loaded
    # machine): then late only since that deadline, never since before the ping
    late = re.match(r"check backup: late since (\S+ \S+)Z", text)
    if late:
        since = datetime.fromisoformat(late.group(1)).replace(tzinfo=UTC)
        assert since >= pinged + timedelta(seconds=2), text.splitlines()[0]
    else:
        assert text.startswith("check backup: up since "), text.splitlines()[0]
    assert "dedup_key heartbeat:backup: 2 event(s)" in text
    assert "route heartbeat:backup, from pd-relay (heartbeat)" in text
    assert "no ping by its deadline: last ping " in text
    assert "up again: a success ping at " in text
    assert text.count("delivered to key key-2") == 2


def test_three_evaluators_send_one_trigger(relay) -> None:
    stack, check = relay
    for _ in range(3):
        stack.start_channel_worker()
    ping(stack, check)
    wait_until(lambda: pages(stack, "trigger"), 20, "the trigger at PagerDuty")
    rounds_after(stack, 3)
    assert len(pages(stack, "trigger")) == 1


def test_an_evaluator_killed_mid_outage_and_restarted_sends_no_second_trigger(relay) -> None:
    stack, check = relay
    first = stack.start_channel_worker()
    ping(stack, check)
    wait_until(lambda: pages(stack, "trigger"), 20, "the trigger at PagerDuty")
    client = stack.redis.client()
    holder = client.get(NAMES.heartbeat_lease)
    first.kill()  # kill -9: its lease lapses
    stack.start_channel_worker()
    wait_until(lambda: client.get(NAMES.heartbeat_lease) not in (None, holder), 20,
               "the restarted worker to evaluate")
    rounds_after(stack, 3)
    assert len(pages(stack, "trigger")) == 1
    ping(stack, check)
    wait_until(lambda: pages(stack, "resolve"), 20, "the resolve at PagerDuty")
    assert len(pages(stack, "trigger")) == 1


def test_a_stopped_channel_worker_stops_evaluating_and_hands_over_at_once(relay) -> None:
    stack, _check = relay
    first = stack.start_channel_worker()
    client = stack.redis.client()
    holder = wait_until(lambda: client.get(NAMES.heartbeat_lease), 20, "an evaluator")
    wait_until(lambda: client.scard("rq:workers") == 1, 20, "RQ's worker up")
    second = stack.start_channel_worker()
    first.popen.send_signal(signal.SIGTERM)
    # released at once (not left to lapse), and the other worker evaluates
    taker = wait_until(lambda: client.get(NAMES.heartbeat_lease) not in (None, holder)
                       and client.get(NAMES.heartbeat_lease), 5, "the other worker to evaluate")
    assert taker != holder
    # RQ's teardown ends within its pubsub thread's wait (up to 60 s when the stop comes
    # as the worker starts: RQ's own race)
    assert first.popen.wait(70) == 0
    assert second.alive()
