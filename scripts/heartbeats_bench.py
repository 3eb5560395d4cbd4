"""Heartbeats' figures (issue 28), for ``scripts/bench --only heartbeats``:

- what a ping costs against a single-event ingest, in the same run: one ingress node
  (no nginx), wrk at each in turn with the same source's API key, medians of rounds, and
  Redis's time per script call of each;
- 10,000 checks: Redis's busy time per evaluation round (every command's time in
  ``INFO commandstats`` across the round, and the longest single call from the slow log),
  the evaluator run in this process against a real redis-server: a round with nothing
  due, and the round in which all 10,000 are due at once;
- how soon a missed deadline pages: many short checks pinged once each at staggered
  times, from each one's expected time + grace (the ping's answer says when) to its page
  stored (the history's accepted step) and to its arrival at the PagerDuty simulator; then
  a late ping of each, from the ping to its resolve stored and arrived. p50 and p99.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests

from relay.auth import new_token
from relay.names import Names
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import wait_until

Wrk = Callable[..., dict[str, float]]


def seconds(when: str | None) -> float:
    """A ping answer's time (ISO 8601, "...Z") as seconds since the epoch (0: none)."""
    return datetime.fromisoformat(when).timestamp() if when else 0.0


def routes_file(path: Path, digest: str, checks: list[dict[str, Any]]) -> Path:
    """A routes file with one source (``bench``, its API key's hash ``digest``) and
    ``checks`` as its ``heartbeats:``."""
    path.write_text(json.dumps({"sources": [{"name": "bench", "api_keys": [digest]}],
                                "heartbeats": checks}))
    path.chmod(0o600)
    return path


def ping_cost(workdir: Path, wrk: Wrk, event: dict[str, Any], seconds: float,
              rounds: int, threads: int, connections: int = 16) -> dict[str, float]:
    """wrk at ``/v2/enqueue`` (one event) and at ``/ping/<name>`` of one node, in turn;
    medians of the rates and p50s, and Redis's µs per request of each (all its commands'
    time over the requests: the ingest's group commit stores several in one call)."""
    token, digest = new_token()
    routes = routes_file(workdir.with_suffix(".routes.yml"), digest, [
        {"name": "bench", "period": "1h", "grace": "1h", "keys": ["key-1"]}])
    stack = Stack(workdir, keys=1, RELAY_ALLOW_ANONYMOUS="false", RELAY_LOG_LEVEL="WARNING",
                  RELAY_THREADS=threads, RELAY_ROUTES_FILE=str(routes),
                  RELAY_QUEUE_MAX_EVENTS=2_000_000, RELAY_QUEUE_MAX_MB=2048,
                  RELAY_QUEUES_MAX_MB=8192)
    try:
        node = stack.start_ingress()
        headers = {"X-API-Key": token}
        bodies = {"ingest": (node + "/v2/enqueue", json.dumps(dict(event,
                                                                  routing_key=stack.keys[0]))),
                  "ping": (node + "/ping/bench", "")}
        client = redis.Redis.from_url(stack.redis.url)
        for url, body in bodies.values():
            wrk(url, body, 2, headers=headers)  # warm up
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in bodies}
        micros: dict[str, list[float]] = {name: [] for name in bodies}
        for _ in range(rounds):
            for name, (url, body) in bodies.items():
                client.config_resetstat()
                found = wrk(url, body, seconds, connections, headers=headers)
                stats = client.info("commandstats")
                usec = sum(float(s["usec"]) for c, s in stats.items()
                           if c not in ("cmdstat_info", "cmdstat_config"))
                runs[name].append(found)  # Redis's µs per request, whatever the commands
                micros[name].append(usec / max(1.0, found["rate"] * seconds))  # (batched)
        client.close()
        figures: dict[str, float] = {}
        for name in bodies:
            figures[f"{name}_rate"] = statistics.median(r["rate"] for r in runs[name])
            figures[f"{name}_p50"] = statistics.median(r["p50"] for r in runs[name])
            figures[f"{name}_p99"] = statistics.median(r["p99"] for r in runs[name])
            figures[f"{name}_errors"] = sum(r["errors"] for r in runs[name])
            figures[f"{name}_redis_us"] = statistics.median(micros[name])
        return figures
    finally:
        stack.close()


def evaluation(workdir: Path, count: int) -> dict[str, Any]:
    """``count`` checks (period 60 s, grace 1 h) pinged once each, spread over a minute,
    the evaluator run in this process on a clock of its own (Redis's stand-in, so that
    an hour passes at once): Redis's busy time per round (every command's time in
    ``INFO commandstats``, the longest call from the slow log) with nothing due, in the
    seconds when a 60th of them turns late each second, and in the rounds after all of
    them passed their grace at once (the pages handed to a list, a batch per round, as
    the evaluator does)."""
    from relay.heartbeats.catalog import Catalog
    from relay.heartbeats.evaluator import Evaluator
    from relay.heartbeats.store import Heartbeats
    from relay.routes.config import load

    token, digest = new_token()
    checks = [{"name": f"c{n:05d}", "period": "60s", "grace": "1h", "keys": ["key-1"]}
              for n in range(count)]
    routes_path = routes_file(workdir.with_suffix(".routes.yml"), digest, checks)
    stack = Stack(workdir, keys=1)
    try:
        client = stack.redis.client()
        names = Names()
        now = [time.time()]
        store = Heartbeats(client, names, clock=lambda: now[0])
        catalog = Catalog(load(routes_path, ["key-1"]), store)
        start = now[0]
        for n, check in enumerate(catalog.all()):
            now[0] = start + n * 60 / count
            store.ping(check, "success")
        sent: list[Any] = []
        # no gap rule: this clock jumps (an hour at once), and no ingress runs
        evaluator = Evaluator(client, names, catalog, lambda page, check: sent.append(page),
                              clock=lambda: now[0], gap_s=10**9, watch_ingress=False)

        def measured() -> tuple[float, float]:
            """One round: Redis's ms in all (commandstats) and its longest call (ms)."""
            client.config_set("slowlog-log-slower-than", 0)
            client.config_set("slowlog-max-len", 100_000)
            client.slowlog_reset()
            client.config_resetstat()
            evaluator.round()
            stats = client.info("commandstats")
            busy = sum(float(s["usec"]) for c, s in stats.items()
                       if c not in ("cmdstat_info", "cmdstat_config", "cmdstat_slowlog"))
            longest = max((int(e["duration"]) for e in client.slowlog_get(100_000)
                           if not _ours(e)), default=0)
            return busy / 1000, longest / 1000

        now[0] = start + 59  # none due yet (the first round says its start: a grace)
        measured()
        idle = [measured() for _ in range(5)]
        late = []
        for second in range(1, 11):  # a 60th of them late each second
            now[0] = start + 60 + second
            late.append(measured())
        now[0] = start + 60 + 3600 + 61  # every one past its grace
        down = []
        while (len(sent) < count or client.llen(names.heartbeat_pages)) and len(down) < 1000:
            down.append(measured())
        busy = sorted(r[0] for r in down)
        return {
            "idle_busy_ms": statistics.median(r[0] for r in idle),
            "idle_longest_ms": max(r[1] for r in idle),
            "late_busy_ms": statistics.median(r[0] for r in late),
            "late_worst_ms": max(r[0] for r in late),
            "late_longest_ms": max(r[1] for r in late),
            "down_rounds": len(down), "paged": len(sent),
            "down_first_ms": down[0][0] if down else 0.0,
            "down_worst_ms": busy[-1] if busy else 0.0,
            "down_median_ms": statistics.median(busy) if busy else 0.0,
            "down_longest_ms": max((r[1] for r in down), default=0.0),
        }
    finally:
        stack.close()


def _ours(entry: dict[str, Any]) -> bool:
    """A slow-log entry of the bench's own CONFIG, SLOWLOG or INFO."""
    command = entry.get("command", b"")
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return text.split(" ", 1)[0].lower() in ("config", "slowlog", "info")


def latency(workdir: Path, checks: int, period_s: float, grace_s: float) -> dict[str, Any]:
    """``checks`` checks pinged once each, spread over one period; each then misses its
    deadline; once paged, each gets a late ping. Times from the deadline (expected +
    grace, as the ping's answer said) to the trigger stored and at the simulator, and
    from the late ping to the resolve stored and at the simulator."""
    from relay.history.search import Query, search

    token, digest = new_token()
    routes = routes_file(workdir.with_suffix(".routes.yml"), digest, [
        {"name": f"l{n:04d}", "period": f"{period_s:g}s", "grace": f"{grace_s:g}s",
         "keys": ["key-1"]} for n in range(checks)])
    stack = Stack(workdir, keys=1, RELAY_ALLOW_ANONYMOUS="false", RELAY_LOG_LEVEL="WARNING",
                  RELAY_ROUTES_FILE=str(routes), RELAY_RATE_PER_MIN=1_000_000)
    try:
        stack.start_simulator()
        node = stack.start_ingress()
        stack.start_worker(0)
        stack.start_channel_worker()
        wait_until(lambda: all(row["worker_alive"] for row in stack.status()), 30,
                   "the worker")  # measured from a running relay, not its start
        wait_until(lambda: stack.redis.client().exists(Names().heartbeat_clock), 30,
                   "the evaluator's first round")
        session = requests.Session()
        session.headers["X-API-Key"] = token
        deadline: dict[str, float] = {}
        spacing = period_s / checks
        for n in range(checks):
            reply = session.post(f"{node}/ping/l{n:04d}", timeout=10)
            reply.raise_for_status()
            deadline[f"l{n:04d}"] = seconds(reply.json()["down_at"])
            time.sleep(spacing)

        def arrivals(action: str) -> dict[str, float]:
            """Each check's first page of ``action`` at PagerDuty (a check pinged late
            goes down again a period later: its second outage is not measured)."""
            found: dict[str, float] = {}
            for event in stack.delivered():
                if event["event_action"] == action:
                    found.setdefault(event["dedup_key"].removeprefix("heartbeat:"), event["at"])
            return found

        def stored(action: str) -> dict[str, float]:
            found: dict[str, float] = {}
            for story in search(stack.redis.client(), Names(), Query(limit=0)):
                first = story.accepted  # (newest first: the last one kept is the first)
                if story.dedup_key.startswith("heartbeat:") and first.get("a") == action:
                    found[story.dedup_key.removeprefix("heartbeat:")] = first["at_ms"] / 1000
            return found

        late: dict[str, float] = {}
        resolver = Resolver(session, node, arrivals, late, checks)
        resolver.start()
        wait_until(lambda: len(arrivals("trigger")) >= checks,
                   period_s + grace_s + 60, "every check's page", every=0.2)
        resolver.join(60)
        wait_until(lambda: len(arrivals("resolve")) >= checks, 60, "every resolve", every=0.2)
        triggers, resolves = arrivals("trigger"), arrivals("resolve")
        kept_triggers, kept_resolves = stored("trigger"), stored("resolve")

        def spread(times: dict[str, float], start: dict[str, float]) -> tuple[float, float]:
            waits = sorted(max(0.0, times[n] - start[n]) for n in start if n in times)
            if not waits:
                return float("nan"), float("nan")
            return waits[len(waits) // 2], waits[max(0, int(len(waits) * 0.99) - 1)]

        return {
            "checks": checks,
            "page_stored": spread(kept_triggers, deadline),
            "page_arrived": spread(triggers, deadline),
            "resolve_stored": spread(kept_resolves, late),
            "resolve_arrived": spread(resolves, late),
            "paged": len(triggers), "resolved": len(resolves),
        }
    finally:
        stack.close()


class Resolver(threading.Thread):
    """Pings each check again as soon as its page has arrived (a late ping), noting when."""

    def __init__(self, session: requests.Session, node: str,
                 arrivals: Callable[[str], dict[str, float]], late: dict[str, float],
                 checks: int) -> None:
        super().__init__(daemon=True)
        self.session, self.node, self.arrivals, self.late = session, node, arrivals, late
        self.checks = checks

    def run(self) -> None:
        until = time.monotonic() + 120
        while len(self.late) < self.checks and time.monotonic() < until:
            for name in sorted(set(self.arrivals("trigger")) - set(self.late)):
                self.late[name] = time.time()
                self.session.post(f"{self.node}/ping/{name}", timeout=10).raise_for_status()
            time.sleep(0.1)
