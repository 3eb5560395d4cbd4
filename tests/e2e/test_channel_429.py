"""End to end: a Telegram channel answered 429 with ``retry_after`` (the stand-in of
tests/standins.py) pauses for it and then sends what waited at its pace, not cut:
real ingress, worker, channel-worker (RQ), Redis and simulator processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relay.names import Names
from relay.stack.processes import wait_until
from tests import standins
from tests.conftest import trigger
from tests.standins import StandIn
from tests.test_channel_types import BOT_TOKEN


@pytest.fixture
def bot() -> Iterator[StandIn]:
    stand_in = StandIn(standins.telegram(BOT_TOKEN))
    yield stand_in
    stand_in.close()


def test_after_a_telegram_429_the_channel_pauses_and_keeps_its_pace(
        make_stack, bot: StandIn, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: telegram
    type: telegram
    url: {bot.url}
    token: ${{PD_RELAY_SECRET_BOT_TOKEN}}
    chat: -1001234567890
routes:
  - name: db
    keys: [key-1]
    channels: [telegram]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes), PD_RELAY_SECRET_BOT_TOKEN=BOT_TOKEN,
                       RELAY_CHANNEL_RETRY_BASE_S="0.2", RELAY_CHANNEL_RETRY_MAX_S="1")
    bot.script(standins.TELEGRAM_429)
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()
    for n in range(3):
        event = trigger(f"disk {n} full", dedup_key=f"disk-{n}",
                        payload={"summary": f"disk {n} full", "source": "db1",
                                 "severity": "critical"})
        assert stack.post(event).status_code == 202
    wait_until(lambda: len(bot.taken()) == 3, 90, "the three messages to reach the bot")
    assert bot.statuses() == [429, 200, 200, 200]
    client = redis.Redis.from_url(stack.env["RELAY_REDIS_URL"], decode_responses=True)
    names = Names(stack.env.get("RELAY_PREFIX", "pdr"))
    assert client.hgetall(names.channel_throttle("telegram")) == {}  # the pace was not cut
    assert client.hget(names.channel_stats, "telegram:sent") == "3"
