"""``pd-relay send-test``: send a test incident through the relay and wait for the verdict.

It posts a trigger and its resolve (severity info, so the test incident closes itself)
to an ingress node, then waits for the worker's note of what PagerDuty answered.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import redis
import requests

from relay.names import NOTED_PREFIX, Names

ACTIONS = ("trigger", "resolve")


def probe_events(dedup_key: str, routing_key: str | None) -> list[dict[str, Any]]:
    host = socket.gethostname()
    trigger: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": f"pd-relay send-test from {host}: this test incident resolves itself",
            "source": host,
            "severity": "info",
            "component": "pd-relay",
        },
    }
    resolve: dict[str, Any] = {"event_action": "resolve", "dedup_key": dedup_key}
    if routing_key:
        trigger["routing_key"] = resolve["routing_key"] = routing_key
    return [trigger, resolve]


def send_test(
    url: str, client: redis.Redis, names: Names, routing_key: str | None, timeout_s: float,
    say: Any = print,
) -> bool:
    """Return True when PagerDuty (or the simulator) accepted both test events."""
    dedup_key = NOTED_PREFIX + uuid.uuid4().hex[:12]
    try:
        reply = requests.post(
            url.rstrip("/") + "/v2/enqueue", json=probe_events(dedup_key, routing_key),
            timeout=10,
        )
    except requests.RequestException as exc:
        say(f"could not reach the relay at {url}: {type(exc).__name__}")
        return False
    if reply.status_code != 202:
        say(f"the relay refused the test events: HTTP {reply.status_code} {reply.text[:300]}")
        return False
    say(f"queued test incident {dedup_key} (trigger, then resolve); waiting for PagerDuty")
    outcomes: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(outcomes) < len(ACTIONS) and time.monotonic() < deadline:
        for action in ACTIONS:
            found = client.get(names.outcome(dedup_key, action))
            if found is not None and action not in outcomes:
                outcomes[action] = str(found)
                say(f"  {action}: {outcomes[action]}")
        time.sleep(0.2)
    missing = [action for action in ACTIONS if action not in outcomes]
    if missing:
        say(f"no answer for {', '.join(missing)} within {timeout_s:.0f}s: "
            "is a worker running for that key? see `pd-relay status`")
        return False
    return all(outcome.startswith("delivered") for outcome in outcomes.values())
