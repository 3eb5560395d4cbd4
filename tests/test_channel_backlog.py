"""The channels' RQ backlog is bounded (issue 23, finding 1): a flood of notices for a
channel that takes nothing stops at the dispatcher's bound; the rest waits in the
outbox (itself capped, skipping and counting), and status and /metrics say so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from relay.app import create_app
from relay.channels.commands import read
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import put_job, rq_backlog
from relay.names import Names
from relay.routes.channels import Channel
from relay.settings import Settings
from tests.conftest import UNIX, trigger

NAMES = Names("pdr")
CHANNELS = {"chat": Channel("chat", "slack", url="https://x"),
            "hook": Channel("hook", "webhook", url="https://y")}


@pytest.fixture
def flooded(tmp_path: Path, keys: tuple[str, ...]) -> tuple[Any, Any, Any]:
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n")
    (tmp_path / "routes.yml").write_text("""
channels:
  - {name: chat, type: slack, url: "https://x"}
  - {name: hook, type: webhook, url: "https://y"}
routes:
  - {name: db, keys: [db], channels: [chat, hook]}
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                  "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml"),
                                  "RELAY_ALLOW_ANONYMOUS": "true"})
    jobs = fakeredis.FakeRedis()  # RQ wants bytes
    fake = fakeredis.FakeRedis(server=jobs.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    app = create_app(settings, client=fake).test_client()
    events = [trigger(f"flood {n}", dedup_key=f"f{n}") for n in range(60)]
    assert app.post("/v2/enqueue", json=events).status_code == 202
    return settings, jobs, fake


def test_a_flood_stops_at_the_rq_bound_and_waits_in_the_outbox(flooded) -> None:
    settings, jobs, fake = flooded
    slept: list[float] = []
    dispatcher = Dispatcher(fake, NAMES, settings, CHANNELS,
                            lambda channel, notice: put_job(jobs, NAMES, channel, notice),
                            backlog=lambda: rq_backlog(jobs, NAMES, list(CHANNELS)),
                            backlog_max=25, sleep=slept.append)
    for _ in range(30):  # no channel worker: nothing leaves RQ
        dispatcher.step(1)
    in_rq = rq_backlog(jobs, NAMES, list(CHANNELS))
    assert 25 <= in_rq <= 25 + len(CHANNELS), in_rq  # the bound, give or take one notice
    assert fake.llen(NAMES.outbox) == 60 - in_rq // 2 and fake.llen(NAMES.outbox_taken) == 0
    held = int(fake.hget(NAMES.channel_stats, "dispatch_held"))
    assert held >= 20 and slept == [1] * held  # each held round waited, never spun
    found = read(fake, jobs, NAMES, list(CHANNELS))["outbox"]
    assert found["rq_jobs"] == in_rq and found["held"] == held, found


def test_status_and_metrics_say_the_dispatcher_holds_back(flooded, capsys) -> None:
    from relay.channels.commands import status

    settings, jobs, fake = flooded
    Dispatcher(fake, NAMES, settings, CHANNELS, lambda c, n: True, backlog=lambda: 30,
               backlog_max=25, sleep=lambda s: None).step(1)
    status(fake, jobs, NAMES, list(CHANNELS), False)
    out = capsys.readouterr().out
    assert "held back 1 time(s): 30 jobs waiting in RQ now" in out, out
    text = create_app(settings, client=fake).test_client().get(
        "/metrics", environ_base=UNIX).get_data(as_text=True)
    assert "pd_relay_outbox_held_total 1.0" in text and "pd_relay_channel_jobs 30.0" in text
