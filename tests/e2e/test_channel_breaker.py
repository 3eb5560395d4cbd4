"""End to end: a channel that refuses everything, with real ingress, worker,
channel-worker (RQ), Redis and simulator processes. Its breaker opens after three
refusals; from then on at most one request a cool-down (3 s) reaches it, its failed
registry stays within its cap, PagerDuty gets every event meanwhile; once it heals, the
next probe closes the breaker and the held messages arrive as a digest.

Needs the routes file's ``breaker:`` (relay.routes.timing) and the gatherings
(relay.channels.gather) of issue 30's other parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay.stack.processes import wait_until
from tests.e2e.test_channels import alert
from tests.receivers import WebhookReceiver

pytest.importorskip("relay.routes.timing", reason="the routes file's breaker: (intervals)")
pytest.importorskip("relay.channels.gather", reason="the gatherings (digests)")

COOLDOWN_S = 3.0
CAP = 5


def row(stack: Any, name: str) -> dict[str, Any]:
    result = stack.cli("channels", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {r["channel"]: r for r in json.loads(result.stdout)["channels"]}[name]


def test_a_dead_channel_costs_a_probe_a_cool_down_and_gets_what_it_missed_as_a_digest(
        make_stack, hooks: WebhookReceiver, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: dead
    type: webhook
    url: {hooks.url}/dead
    per_minute: 600
    breaker: {{failures: 3, cooldown: {COOLDOWN_S:g}s}}
    failed_max: {CAP}
routes:
  - name: all
    keys: [key-1]
    channels: [dead]
""")
    routes.chmod(0o600)
    hooks.script("/dead", steady=(403, {}, "webhook disabled"))
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes),
                       RELAY_CHANNEL_RETRY_BASE_S="0.2", RELAY_CHANNEL_RETRY_MAX_S="1")
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()
    posted: list[str] = []

    def post() -> None:
        key = f"e{len(posted)}"
        assert stack.post(alert(key, "critical")).status_code == 202
        posted.append(key)

    for _ in range(6):
        post()
    opened = wait_until(lambda: (got := row(stack, "dead"))["breaker"]["state"] == "open"
                        and got, 30, "the breaker to open")
    assert opened["failed"] <= 2  # the refusals before the third, which opened it
    assert hooks.tries("/dead") >= 3

    # open, events keep coming: one probe a cool-down reaches the channel, no more
    def probed(times: int) -> bool:
        post()
        return hooks.tries("/dead") >= 3 + times

    wait_until(lambda: probed(3), 6 * COOLDOWN_S + 20, "three probes", every=0.5)
    after = hooks.times("/dead")[2:]
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    # a probe is given a cool-down after the last; it reaches the stand-in a little later
    assert gaps and min(gaps) >= COOLDOWN_S - 1.0, gaps
    status = row(stack, "dead")
    assert status["failed"] <= CAP and status["breaker"]["state"] == "open"
    # every request since it opened was a probe (one may be on its way)
    tries = hooks.tries("/dead") - 3
    assert tries <= status["breaker"]["probes"] <= tries + 1, (tries, status["breaker"])
    assert status["held"] >= 1
    listed = stack.cli("channels", "status")
    assert "dead: breaker open since" in listed.stdout, listed.stdout
    # PagerDuty is untouched: every event delivered meanwhile
    wait_until(lambda: len(stack.delivered()) == len(posted), 30, "PagerDuty to take all")

    # it heals: the next probe closes the breaker, what was held arrives as a digest
    hooks.script("/dead", steady=(200, {}, "ok"))
    for _ in range(2):
        post()
    held = wait_until(lambda: (got := row(stack, "dead"))["breaker"]["state"] == "closed"
                      and got, 2 * COOLDOWN_S + 20, "the breaker to close", every=0.3)
    assert held["held"] == 0

    def arrived() -> set[str] | None:
        keys = set()
        for body in hooks.taken("/dead"):
            if "notice" in body:
                keys.add(body["notice"]["dedup_key"])
            for line in body.get("digest", {}).get("lines", []):
                keys.add(line["dedup_key"])
        return keys if keys >= set(posted[2:]) else None

    got = wait_until(arrived, 30, "the held messages (a digest) after the breaker closed")
    digests = [b["digest"] for b in hooks.taken("/dead") if "digest" in b]
    assert digests and all(d["reason"] == "breaker" for d in digests)
    assert sum(d["total"] for d in digests) >= len(posted) - 5, digests
    assert set(posted[:2]) - got == set(posted[:2])  # the two refused: in the failed registry
    assert row(stack, "dead")["failed"] == 2
    wait_until(lambda: len(stack.delivered()) == len(posted), 30, "PagerDuty to take all")
