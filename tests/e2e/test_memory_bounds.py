"""End to end: nothing a sender does fills Redis so that a page is refused (promise 8).

A noisy tool's held-back events (a `drop` route) are remembered within a bound, the
history within its bytes; and when Redis is full all the same, the ingress sheds history
before it refuses a page."""

from __future__ import annotations

from pathlib import Path

import redis

from relay.stack.processes import wait_until
from tests.conftest import trigger

ROUTES = """
routes:
  - name: noise
    match: ['severity="info"']
    drop: true
"""


def noise(start: int, count: int, width: int = 0) -> list[dict[str, object]]:
    """Held-back info events: half with a dedup_key each (``width`` characters or more),
    half without (the relay mints one)."""
    events = []
    for n in range(start, start + count):
        event = trigger(f"noise {n}", payload={"summary": f"noise {n}", "source": "ci",
                                               "severity": "info"})
        if n % 2:
            event["dedup_key"] = f"noise-{n}".ljust(width, "x")
        events.append(event)
    return events


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def test_a_flood_of_held_back_events_leaves_room_for_a_page(make_stack,
                                                            tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(ROUTES)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes), RELAY_INCIDENTS_MAX="2000",
                       RELAY_HISTORY_MAX_MB="0.5")
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    client = redis.Redis.from_url(stack.redis.url)
    assert stack.post(noise(0, 100)).status_code == 202
    client.config_set("maxmemory", used(client) + 4 * 2**20)  # 4 MB of room

    answers = [stack.post(noise(n, 500)).status_code for n in range(0, 40_000, 500)]
    assert answers == [202] * len(answers)  # 40,000 held-back events fit in 4 MB
    assert client.zcard("pdr:held") <= 2000  # minted dedup_keys are not remembered at all

    page = stack.post(trigger("payments down", dedup_key="real-page"))
    assert page.status_code == 202, page.text
    wait_until(lambda: any(e["dedup_key"] == "real-page" for e in stack.delivered()), 30,
               "the page to reach PagerDuty")


def test_a_full_redis_sheds_history_before_it_refuses_a_page(make_stack,
                                                            tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(ROUTES)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes), RELAY_INCIDENTS_MAX="100")
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    client = redis.Redis.from_url(stack.redis.url)
    for n in range(0, 12_000, 500):  # stories of held-back events: a few MB of history
        assert stack.post(noise(n, 500, width=200)).status_code == 202
    stories = client.xlen("pdr:history")
    client.config_set("maxmemory", used(client) - 64 * 1024)  # full

    page = stack.post(trigger("payments down", dedup_key="real-page"))
    assert page.status_code == 202, page.text
    assert client.xlen("pdr:history") < stories  # the history paid for it
    shed = client.hgetall("pdr:shed")
    assert int(shed.get(b"history", 0)) > 0, shed
    wait_until(lambda: any(e["dedup_key"] == "real-page" for e in stack.delivered()), 30,
               "the page to reach PagerDuty")
