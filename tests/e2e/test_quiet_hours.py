"""End to end: quiet hours of routes (time_intervals), with real ingress, worker, Redis and
PagerDuty simulator processes. The intervals are built at test time from the clock, in
Europe/Berlin, so that the routes are muted for the rest of the current minute (and the
next, when little of it is left): while muted, a route's warnings go to its night key and
its critical events to its usual key; a route without night keys suppresses them; after
the interval, both send as usual."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from relay.stack.processes import wait_until
from tests.conftest import trigger

BERLIN = ZoneInfo("Europe/Berlin")


def alert(dedup_key: str, source: str, severity: str) -> dict[str, object]:
    return trigger(f"{source} is down", dedup_key=dedup_key,
                   payload={"summary": f"{source} down", "source": source,
                            "severity": severity})


def hhmm(minute: int) -> str:
    return f'"{minute // 60:02d}:{minute % 60:02d}"'


def quiet_until(margin_s: float) -> tuple[int, int, float]:
    """(start, end) minutes of the day in Berlin muting from now for at least
    ``margin_s`` seconds, and when the mute ends (seconds since the epoch). Not later
    than 23:57: the mute would run past midnight."""
    now = datetime.now(BERLIN)
    start = now.hour * 60 + now.minute
    begun = now.replace(second=0, microsecond=0)
    end = start + 1 if (60 - now.second) >= margin_s else start + 2
    ends = (begun + timedelta(minutes=end - start)).timestamp()
    return start, end, ends


def test_a_muted_route_sends_to_its_night_key_then_as_usual(make_stack, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text("routes: [{name: all, keys: [key-1]}]\n")
    stack = make_stack(keys=3, RELAY_ALLOW_ANONYMOUS="true", RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    url = stack.start_ingress()
    for index in range(3):
        stack.start_worker(index)
    ingress = next(p for p in stack.processes if p.name.startswith("ingress"))

    wait_until(lambda: datetime.now(BERLIN).hour * 60 + datetime.now(BERLIN).minute < 1438,
               150, "a time the rest of the day can mute")  # before 23:58 only
    start, end, ends = quiet_until(margin_s=20)
    active = [f"{{start_time: {hhmm(0)}, end_time: {hhmm(start)}}}"] if start else []
    active += [f"{{start_time: {hhmm(end)}, end_time: {hhmm(1440)}}}"] if end < 1440 else []
    routes.write_text(f"""
time_intervals:
  - name: now
    time_intervals:
      - times: [{{start_time: {hhmm(start)}, end_time: {hhmm(end)}}}]
        location: Europe/Berlin
  - name: not-now
    time_intervals:
      - times: [{", ".join(active)}]
        location: Europe/Berlin
routes:
  - name: db
    match: ['source="db1"']
    keys: [key-3]
    active_time_intervals: [not-now]
  - name: pay
    keys: [key-1]
    night_keys: [key-2]
    mute_time_intervals: [now]
    muted_min_severity: critical
""")
    ingress.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded: 0 source(s), 2 route(s)" in ingress.log.read_text(), 10,
               "the routes file to be reloaded")
    post = stack.session.post

    def send(body: dict[str, object]) -> str:
        reply = post(url + "/v2/enqueue", json=body, timeout=10)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["message"])

    assert time.time() < ends - 5, "the mute ended before the events were sent"
    assert send(alert("n1", "pay1", "warning")) == "Event queued"
    assert send(alert("c1", "pay1", "critical")) == "Event queued"
    assert send(alert("d1", "db1", "error")).startswith("Suppressed: route db is muted now")
    sent_muted = time.time()
    assert sent_muted < ends, "the mute ended while the events were sent"
    wait_until(lambda: len(stack.delivered()) == 2, 30, "two deliveries")

    wait_until(lambda: time.time() >= ends + 0.5, 130, "the end of the quiet interval")
    assert send(alert("n2", "pay1", "warning")) == "Event queued"
    assert send(alert("d2", "db1", "error")) == "Event queued"
    wait_until(lambda: len(stack.delivered()) == 4, 30, "four deliveries")
    key_of = {e["dedup_key"]: e["routing_key"] for e in stack.delivered()}
    assert key_of == {"n1": stack.keys[1], "c1": stack.keys[0], "n2": stack.keys[0],
                      "d2": stack.keys[2]}
    assert "route=pay (muted: night keys)" in ingress.log.read_text()
