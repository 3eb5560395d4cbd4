"""End to end: quiet hours and digests with real ingress, channel-worker (its dispatcher
deciding, RQ sending), Redis and a stand-in chat server: a channel muted by a real time
interval loses nothing (all it held arrives in one digest at the interval's end), a
``muted: drop`` channel drops and counts, and a 1,000-event storm reaches a digest channel
as at most one message a period, its digests counting every event."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from relay.names import Names
from relay.stack.processes import wait_until
from tests.conftest import trigger
from tests.receivers import Answer, WebhookReceiver

NAMES = Names()
LEAD_S = 15  # the stack starts and the events are posted within this, before the mute ends
PERIOD_S = 3.0
STORM_S = 10.0  # the storm's 1,000 events are posted over this (at least)


class TimedReceiver(WebhookReceiver):
    """The webhook stand-in, noting when each request came."""

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        found = super().answer(path, headers, raw)
        with self.lock:
            self.requests[-1]["at"] = time.time()
        return found

    def arrived(self, path: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(r["at"], r["body"]) for r in self.requests
                    if r["path"] == path and r["status"] < 300]


@pytest.fixture
def hooks() -> Iterator[TimedReceiver]:
    receiver = TimedReceiver()
    yield receiver
    receiver.close()


def alert(n: int, severity: str, source: str) -> dict[str, Any]:
    summary = f"{source} event {n} is {severity}"
    return trigger(summary, dedup_key=f"{source}-{n}",
                   payload={"summary": summary, "source": source, "severity": severity})


def mute_end() -> float:
    """The first minute boundary at least ``LEAD_S`` from now: Alertmanager's times are
    minutes, so the mute ends there (between LEAD_S and LEAD_S + 60 s from now)."""
    now = time.time()
    return (int(now + LEAD_S) // 60 + 1) * 60


def quiet_hours(end: float) -> str:
    """A time interval (UTC) that holds from before now until ``end``."""
    hhmm = datetime.fromtimestamp(end, UTC).strftime("%H:%M")
    start, stop = ("00:00", hhmm) if hhmm != "00:00" else ("23:00", "24:00")
    return f'[{{start_time: "{start}", end_time: "{stop}"}}]'


def test_a_muted_channel_loses_nothing_and_a_dropping_one_counts(
        make_stack, hooks: TimedReceiver, tmp_path: Path) -> None:
    end = mute_end()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
time_intervals:
  - name: quiet-now
    time_intervals:
      - times: {quiet_hours(end)}
channels:
  - name: team-chat
    type: slack
    url: {hooks.url}/team
    mute_time_intervals: [quiet-now]
    muted_min_severity: critical
  - name: dropper
    type: webhook
    url: {hooks.url}/dropper
    mute_time_intervals: [quiet-now]
    muted: drop
routes:
  - name: db
    match: ['source="db"']
    channels: [team-chat, dropper]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    stack.start_ingress()
    stack.start_channel_worker()
    for n in range(20):
        assert stack.post(alert(n, ("warning", "error", "info")[n % 3], "db")).status_code == 202
    assert stack.post(alert(99, "critical", "db")).status_code == 202
    posted = time.time()
    assert posted < end, "the stack took longer than LEAD_S to start: raise it"
    client = redis.Redis.from_url(stack.env["RELAY_REDIS_URL"], decode_responses=True)
    held = NAMES.gathering("team-chat", "muted:quiet-now")
    wait_until(lambda: client.hget(held, "total") == "20", 20, "the 20 notices held")
    wait_until(lambda: client.hget(NAMES.channel_stats, "dropper:muted_dropped") == "21", 20,
               "the dropping channel to drop and count all 21")
    # critical goes through at once; nothing else before the mute's end
    critical = wait_until(lambda: hooks.arrived("/team"), 20, "the critical one at once")
    assert len(critical) == 1 and "db event 99 is critical" in critical[0][1]["text"]
    assert critical[0][0] < end and time.time() < end
    # at the end: one message, the digest of all 20
    wait_until(lambda: len(hooks.arrived("/team")) == 2, end - time.time() + 20,
               "the digest at the mute's end")
    at, body = hooks.arrived("/team")[1]
    assert at >= end - 0.5, (at, end)  # held until the end (the same machine's clock)
    headline, *lines = body["text"].split("\n")
    assert re.search(r"20 notices held in quiet hours", headline), headline
    assert "7 warning" in headline and "7 error" in headline and "6 info" in headline
    assert sorted(line for line in lines if "db event" in line) == sorted(
        f"TRIGGERED [{('warning', 'error', 'info')[n % 3]}] db event {n} is "
        f"{('warning', 'error', 'info')[n % 3]} (db)" for n in range(20))
    assert not client.exists(held) and client.zcard(NAMES.gatherings_due) == 0
    assert hooks.arrived("/dropper") == []
    print(f"\nmute ended {end - posted:.1f} s after the last post; digest {at - end:.2f} s "
          "after the end")


def test_a_storm_reaches_a_digest_channel_once_a_period(
        make_stack, hooks: TimedReceiver, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: chat
    type: slack
    url: {hooks.url}/chat
    digest: {PERIOD_S:g}s
    digest_first: immediate
    per_minute: 600
  - name: hook
    type: webhook
    url: {hooks.url}/hook
    digest: {PERIOD_S:g}s
routes:
  - name: storm
    match: ['source="storm"']
    channels: [chat, hook]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    stack.start_ingress()
    stack.start_channel_worker()
    started = time.time()
    for n in range(1000):  # over STORM_S at least: the storm lasts a few periods
        assert stack.post(alert(n, ("critical", "warning")[n % 2], "storm")).status_code == 202
        if n % 10 == 9:
            due = started + STORM_S * (n + 1) / 1000
            wait_until(lambda due=due: time.time() >= due, STORM_S, "the storm's pace")
    storm_s = time.time() - started

    def counted_in(body: dict[str, Any]) -> int:
        if "digest" in body:
            return int(body["digest"]["total"])
        if match := re.search(r"(\d+) notices? gathered", body["text"]):
            return int(match.group(1))
        return 1  # the storm's first, sent at once

    def counted(path: str) -> int:
        return sum(counted_in(body) for _, body in hooks.arrived(path))

    wait_until(lambda: counted("/chat") == 1000 and counted("/hook") == 1000,
               storm_s + 6 * PERIOD_S + 30, "every event counted in a digest")
    figures = []
    for path in ("/chat", "/hook"):
        at = [when for when, _ in hooks.arrived(path)]
        gaps = [b - a for a, b in zip(at[:-1], at[1:], strict=True)]
        # one message a period: the digests are due a period apart at least; their sends
        # may come up to a second or two late (the dispatcher's round, RQ), never early
        assert len(at) <= (at[-1] - at[0] + 2.0) / PERIOD_S + 1, (path, gaps)
        figures.append(f"{path}: {len(at)} messages over {at[-1] - at[0]:.1f} s, "
                       f"closest {min(gaps, default=0):.2f} s apart")
    chat = hooks.arrived("/chat")
    assert "storm event 0" in chat[0][1]["text"]  # the first at once, then digests
    assert all("notices gathered" in body["text"] or "notice gathered" in body["text"]
               for _, body in chat[1:])
    for path in ("/chat", "/hook"):  # the figures: when each came, and what it counted
        print(path, [(round(when - started, 1), counted_in(body))
                     for when, body in hooks.arrived(path)])
    print(f"\nstorm of 1000 posted in {storm_s:.1f} s; " + "; ".join(figures))
