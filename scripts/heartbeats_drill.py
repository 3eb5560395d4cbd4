"""The heartbeats drill (issue 28), for ``scripts/drill --only heartbeats``: checks going
down and up under three evaluators (three channel workers), the relay restarted (kill -9
of its ingress nodes, workers and channel workers) in the middle of an outage, and pings
sent exactly at a check's deadline; then a count of the pages PagerDuty took.

Each check (period 3 s, grace 2 s) is pinged every second for a few seconds, then falls
silent, in turn:
- an outage: silent until its page has arrived at the PagerDuty simulator (at most 40 s:
  past that the outage counts as lost), then pinged again, which must resolve it;
- a race: pinged exactly at the deadline its last ping's answer gave (expected time +
  grace): either the ping or the evaluation wins, and either is right, once.
Two thirds into the run every check still pinging falls silent for an outage and, a
second later, the relay's processes are killed -9 and started again three seconds after
(Redis and nginx stay): those outages' deadlines pass while the relay is down or coming
back. At the end every check is pinged until its last incident has resolved.

The verdict (scripts/failover_verdict.py ``alternated``): lost = outages never paged;
extra incidents = a check's incidents beyond its outages, its pings at the deadline and
its times unreachable (up, its pings failing past its deadline while the relay restarts:
a check that came back up between the silence and the kill; a page is then right) (a
second incident for one outage, or a page while pinged in time); duplicates = a page
repeated within one outage (the same open incident at PagerDuty: at least once, as every
event); order violations = a resolve before its trigger, or an incident still open at
the end; misrouted = a page on another key than its check's.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import failover_verdict
import requests
from heartbeats_bench import seconds

from relay.auth import new_token
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import wait_until

PERIOD_S, GRACE_S, EVERY_S = 3.0, 2.0, 1.0
PAGE_WAIT_S = 40.0  # an outage's page must arrive within this (the relay's downtime in)


@dataclass
class Check:
    name: str
    key: int  # index of the key its page goes on
    phase: str = "up"  # up, outage, race
    next_at: float = 0.0  # when to act next (time.time())
    up_until: float = 0.0
    down_at: float = 0.0  # the last ping's answer: expected + grace
    paged_before: int = 0  # its triggers at PagerDuty when the silence began
    silent_since: float = 0.0
    unreachable: bool = False  # its pings failing past its deadline (the relay restarting)


@dataclass
class Plan:
    """What the pinger did: outages (name, silent since, paged), races, pings, retries."""
    outages: list[tuple[str, float, float, bool]] = field(default_factory=list)
    # (check, silent since, back at, paged)
    races: list[str] = field(default_factory=list)  # the checks pinged at the deadline
    # the checks whose pings failed past their deadline while up (the relay restarting: one
    # that came back up between the silence and the kill): a page is then right, once
    unreachable: list[str] = field(default_factory=list)
    killed_at: float = 0.0  # when the relay's processes were killed
    pings: int = 0
    retries: int = 0


class Pinger(threading.Thread):
    def __init__(self, url: str, token: str, checks: list[Check],
                 triggers: Callable[[], dict[str, int]], seed: int = 28) -> None:
        super().__init__(daemon=True)
        self.url, self.checks, self.triggers = url, checks, triggers
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = token
        self.rng = random.Random(seed)
        self.plan = Plan()
        self.stopped = threading.Event()
        self.ending = threading.Event()  # stop going silent; bring every check back up
        self.lock = threading.Lock()
        self.seen: dict[str, int] = {}
        self.seen_at = 0.0

    def ping(self, check: Check) -> bool:
        """One success ping; False if the relay did not take it (down, 502, 503)."""
        try:
            reply = self.session.post(f"{self.url}/ping/{check.name}", timeout=5)
        except requests.RequestException:
            self.plan.retries += 1
            return False
        if reply.status_code in (502, 503):
            self.plan.retries += 1
            return False
        if reply.status_code != 200:
            raise RuntimeError(f"ping {check.name}: {reply.status_code} {reply.text[:200]}")
        self.plan.pings += 1
        answer = reply.json()
        check.down_at = seconds(answer.get("down_at"))
        return True

    def paged(self, check: Check) -> int:
        now = time.monotonic()
        if now - self.seen_at > 0.3:
            self.seen, self.seen_at = self.triggers(), now
        return self.seen.get(check.name, 0)

    def silence(self, check: Check, kind: str) -> None:
        check.phase, check.silent_since = kind, time.time()
        check.paged_before = self.paged(check)
        check.next_at = check.down_at if kind == "race" else time.time() + 0.2

    def silence_all(self) -> None:
        """Every check still pinging falls silent now (an outage)."""
        with self.lock:
            for check in self.checks:
                if check.phase == "up" and check.down_at:
                    self.silence(check, "outage")

    def step(self, check: Check) -> None:
        now = time.time()
        if check.phase == "up":
            if self.ping(check):
                check.unreachable = False
                check.next_at = now + EVERY_S
                if now >= check.up_until and not self.ending.is_set():
                    self.silence(check, self.rng.choice(("outage", "outage", "race")))
            else:
                if check.down_at and now > check.down_at and not check.unreachable:
                    check.unreachable = True
                    self.plan.unreachable.append(check.name)
                check.next_at = now + 0.2
        elif check.phase == "race":
            if self.ping(check):  # at the deadline, whoever wins
                self.plan.races.append(check.name)
                self.back_up(check)
            else:
                check.next_at = now + 0.2
        elif check.phase == "outage":
            paged = self.paged(check) > check.paged_before
            if paged or now - check.silent_since > PAGE_WAIT_S:
                if self.ping(check):
                    self.plan.outages.append((check.name, check.silent_since, time.time(),
                                              paged))
                    self.back_up(check)
                    return
            check.next_at = now + 0.2

    def back_up(self, check: Check) -> None:
        now = time.time()
        check.phase, check.next_at = "up", now + EVERY_S
        check.up_until = now + self.rng.uniform(2.0, 5.0)

    def run(self) -> None:
        now = time.time()
        for n, check in enumerate(self.checks):
            check.next_at = now + n * EVERY_S / len(self.checks)
            check.up_until = now + self.rng.uniform(2.0, 6.0)
        while not self.stopped.is_set():
            with self.lock:
                check = min(self.checks, key=lambda c: c.next_at)
                wait = check.next_at - time.time()
                if wait <= 0:
                    self.step(check)
                    continue
            self.stopped.wait(min(wait, 0.05))

    def all_up(self) -> bool:
        with self.lock:
            return all(check.phase == "up" for check in self.checks)


def routes(path: Path, digest: str, checks: list[Check]) -> Path:
    path.write_text(json.dumps({
        "sources": [{"name": "drill", "api_keys": [digest]}],
        "heartbeats": [{"name": c.name, "period": f"{PERIOD_S:g}s", "grace": f"{GRACE_S:g}s",
                        "keys": [f"key-{c.key + 1}"]} for c in checks]}))
    path.chmod(0o600)
    return path


def restart(stack: Stack) -> None:
    """kill -9 the relay's processes (ingress nodes, workers, channel workers), start
    them again 3 s later (Redis and nginx stay)."""
    killed = [p for p in stack.processes if p.alive() and p.name.split("-")[0] in
              ("ingress", "workers", "channel")]
    for process in killed:
        process.kill()
    time.sleep(3)
    for process in killed:
        kind = process.name.split("-")[0]
        if kind == "ingress":
            stack.start_ingress(int(process.name.split("-")[1]))
        elif kind == "workers":
            share = int(process.name.split("-")[1])
            stack.start_workers(share, 2, name=f"workers-{share}-{len(stack.processes)}")
        else:
            stack.start_channel_worker(f"channel-worker-{len(stack.processes)}")


def run(workdir: Path, seconds: float,
        build: Callable[..., tuple[Stack, str]]) -> dict[str, Any]:
    """The drill on a stack from ``build`` (scripts/drill.py's: two ingress nodes behind
    nginx, two worker processes), with three channel workers; its row."""
    count = 12 if seconds < 60 else 30
    checks = [Check(f"hb{n:02d}", n % 3) for n in range(count)]
    token, digest = new_token()
    workdir.mkdir(parents=True)
    path = routes(workdir / "routes.yml", digest, checks)
    stack, enqueue_url = build(workdir / "stack", RELAY_ROUTES_FILE=str(path),
                               RELAY_ALLOW_ANONYMOUS="false")
    url = enqueue_url.removesuffix("/v2/enqueue")
    try:
        for _ in range(3):
            stack.start_channel_worker()

        def triggers() -> dict[str, int]:
            found: dict[str, int] = {}
            for event in stack.delivered():
                if event["event_action"] == "trigger":
                    name = event["dedup_key"].removeprefix("heartbeat:")
                    found[name] = found.get(name, 0) + 1
            return found

        pinger = Pinger(url, token, checks, triggers)
        pinger.start()
        try:
            time.sleep(seconds * 2 / 3)
            pinger.silence_all()
            time.sleep(1)
            pinger.plan.killed_at = time.time()
            restart(stack)
            time.sleep(seconds / 3)
            pinger.ending.set()
            wait_until(pinger.all_up, PAGE_WAIT_S + 30, "every check back up", every=0.5)
            wait_until(lambda: not failover_verdict.alternated(stack.delivered())["open"],
                       30, "every incident resolved", every=0.5)
        except AssertionError as failed:  # counted below: lost, or open at the end
            print(f"  heartbeats: {failed}", flush=True)
        pinger.stopped.set()
        pinger.join(10)
        arrivals = [e for e in stack.delivered() if e["dedup_key"].startswith("heartbeat:")]
    finally:
        stack.close()
    return verdict(pinger.plan, checks, arrivals, stack.keys)


def verdict(plan: Plan, checks: list[Check], arrivals: list[dict[str, Any]],
            keys: list[str]) -> dict[str, Any]:
    found = failover_verdict.alternated(arrivals)
    key_of = {f"heartbeat:{c.name}": keys[c.key] for c in checks}
    misrouted = sum(1 for e in arrivals if e["routing_key"] != key_of.get(e["dedup_key"]))
    outages = len(plan.outages)
    paged = sum(1 for *_, was_paged in plan.outages if was_paged)
    across = sum(1 for _, since, back, _ in plan.outages if since < plan.killed_at < back)
    # an incident a check's silences do not explain: a second one for one outage, or a
    # page while it was pinged in time; and the pings at the deadline the evaluation won
    extra = won = 0
    for check, opened in found["incidents"].items():
        name = check.removeprefix("heartbeat:")
        beyond = opened - sum(1 for outage, *_ in plan.outages if outage == name) \
            - plan.unreachable.count(name)
        extra += max(0, beyond - plan.races.count(name))
        won += max(0, min(beyond, plan.races.count(name)))
    return {
        "drill": f"heartbeats ({outages} outages, {across} across the restart, {paged} "
                 f"paged; {len(plan.races)} pings at the deadline, {won} after the page; "
                 f"{len(plan.unreachable)} unreachable past the deadline; "
                 f"{extra} extra incidents)",
        "accepted": plan.pings,
        "extra incidents": extra,
        "delivered": len(arrivals),
        "duplicates": found["duplicates"],
        "lost": outages - paged,
        "order violations": found["order violations"] + len(found["open"]),
        "misrouted": misrouted,
        "client retries": plan.retries,
    }
