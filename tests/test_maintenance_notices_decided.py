"""Maintenance notices go the way of any notice (issue 30, fix 2): the channel worker tells
them through the dispatcher's decisions, so a muted channel holds them for its digest at
the mute's end and a digest channel gathers them (before: each one a message at once,
quiet hours or not)."""

from __future__ import annotations

from pathlib import Path

import fakeredis

from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import put_job, rq_waiting
from relay.channels.worker import maintenance_notices
from relay.names import Names
from relay.routes.config import load
from relay.routes.windows import Windows
from relay.settings import Settings

NAMES = Names("pdr")
T0 = 1_795_998_000.0  # 2026-11-30 00:20 UTC, a Monday


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_muted_channel_holds_them_and_a_digest_channel_gathers_them(
        tmp_path: Path, keys: tuple[str, ...]) -> None:
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n")
    (tmp_path / "routes.yml").write_text("""
time_intervals:
  - name: night
    time_intervals:
      - times: [{start_time: "00:00", end_time: "07:00"}]
channels:
  - {name: quiet, type: slack, url: "https://x", maintenance: true,
     mute_time_intervals: [night]}
  - {name: gathered, type: slack, url: "https://y", maintenance: true, digest: 5m}
  - {name: plain, type: slack, url: "https://z", maintenance: true}
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                  "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml")})
    routes = load(tmp_path / "routes.yml", settings.key_names)
    channels = {c.name: c for c in routes.channels}
    jobs = fakeredis.FakeRedis()  # RQ wants bytes
    fake = fakeredis.FakeRedis(server=jobs.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    clock = Clock(T0)
    dispatcher = Dispatcher(fake, NAMES, settings, channels,
                            lambda channel, notice: put_job(jobs, NAMES, channel, notice),
                            routes=routes, clock=clock)
    notices = maintenance_notices(fake, NAMES, settings, routes, dispatcher)
    Windows(fake, NAMES.maintenance, clock).add("db", ['source="db1"'], T0 + 60, T0 + 120)
    assert notices.tick() == [("db", "added")]
    # the plain channel is told at once; the muted one holds it, the digest one gathers it
    assert rq_waiting(jobs, NAMES, list(channels)) == {"quiet": 0, "gathered": 0, "plain": 1}
    held = fake.hgetall(NAMES.gathering("quiet", "muted:night"))
    gathered = fake.hgetall(NAMES.gathering("gathered", "digest"))
    assert held["total"] == "1" and held["t:maintenance"] == "1", held
    assert gathered["total"] == "1" and gathered["t:maintenance"] == "1", gathered
