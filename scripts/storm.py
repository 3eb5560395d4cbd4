"""An alert storm (issue 15), for ``scripts/bench --only storm``: how long the pages that
matter wait behind a flood of repeats, and what the storm costs at PagerDuty.

Three keys at PagerDuty's 120 per window. For one window, 300 flapping incidents
re-trigger every few seconds at info and warning, and 60 new critical incidents start at
random times, each resolved a window later. Time runs ``scale`` times faster than
PagerDuty's (its 60 s window becomes 60/scale s, and every time in the scenario with
it); figures are reported in PagerDuty's seconds (times ``scale``).
"""

from __future__ import annotations

import heapq
import random
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from relay.keys import key_id
from relay.names import Names
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import wait_until

KEYS, FLAPPING, CRITICAL, LIMIT = 3, 300, 60, 120
SENDERS = 8  # threads posting the scenario's events at their times


@dataclass
class Sent:
    """What the scenario sent and when its 202 came (wall-clock seconds)."""

    accepted: dict[tuple[str, int], float] = field(default_factory=dict)  # (dedup_key, seq)
    refused: int = 0


def scenario(window_s: float, seed: int = 15) -> list[tuple[float, dict[str, Any]]]:
    """(time from the start, event), in time order; ``seq`` in custom_details counts each
    incident's events from 1 (a resolve carries it in the dedup_key's order only)."""
    rng = random.Random(seed)
    timed: list[tuple[float, dict[str, Any]]] = []
    for n in range(FLAPPING):
        at, seq = rng.uniform(0, window_s / 15), 0
        while at < window_s:
            seq += 1
            severity = "info" if n % 2 else "warning"
            timed.append((at, trigger(f"flap-{n}", seq, severity)))
            at += rng.uniform(2, 6) * window_s / 60  # every few (PagerDuty's) seconds
    for n in range(CRITICAL):
        start = rng.uniform(0, window_s)
        timed.append((start, trigger(f"crit-{n}", 1, "critical")))
        timed.append((start + window_s, {"event_action": "resolve", "dedup_key": f"crit-{n}"}))
    return sorted(timed, key=lambda item: item[0])


def trigger(dedup_key: str, seq: int, severity: str) -> dict[str, Any]:
    return {"event_action": "trigger", "dedup_key": dedup_key, "payload": {
        "summary": f"{dedup_key} is {'down' if severity == 'critical' else 'flapping'}",
        "source": "storm", "severity": severity, "custom_details": {"seq": seq}}}


def play(url: str, timed: list[tuple[float, dict[str, Any]]]) -> tuple[Sent, float]:
    """Post every event at its time from ``SENDERS`` threads; return what was accepted
    and the wall-clock start."""
    sent, lock = Sent(), threading.Lock()
    queue = list(enumerate(timed))
    heapq.heapify(queue)
    start = time.time() + 0.5

    def sender() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                _, (at, event) = heapq.heappop(queue)
            time.sleep(max(0.0, start + at - time.time()))
            reply = session.post(url, json=event, timeout=10)
            seq = event.get("payload", {}).get("custom_details", {}).get("seq", 0)
            with lock:
                if reply.status_code == 202:
                    sent.accepted[(event["dedup_key"], seq)] = time.time()
                else:
                    sent.refused += 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, start


def backlog(stack: Stack) -> int:
    """Events queued (gaps in lanes too) and in flight on every key."""
    names, client = Names("pdr"), stack.redis.client()
    with client.pipeline(transaction=False) as pipe:
        for key in stack.keys:
            for name in (*names.waiting(key_id(key)), names.inflight(key_id(key))):
                pipe.llen(name)
        return sum(pipe.execute())


def run(workdir: Path, scale: float, fault: Callable[[Stack], None] | None = None,
        channel_worker: bool = False, **env: Any) -> dict[str, Any]:
    """One storm on a fresh stack (``env``: the relay's settings, storm mode among them,
    its times in PagerDuty's seconds: scaled here); ``fault`` is done to the stack halfway
    through the storm (the drill's); ``channel_worker``: with ``pd-relay channel-worker``
    (for a routes file whose route tells channels: scripts/channels_bench.py)."""
    window_s = 60 / scale
    for name in ("RELAY_STORM_AFTER_S", "RELAY_STORM_AGE_S"):
        if name in env:
            env[name] = float(env[name]) / scale
    stack = Stack(workdir, keys=KEYS, RELAY_RATE_PER_MIN=LIMIT, RELAY_RATE_WINDOW_S=window_s,
                  RELAY_LOG_LEVEL="WARNING", **env)
    try:
        stack.start_simulator(limit=LIMIT, window_s=window_s)
        nodes = [stack.start_ingress().removeprefix("http://") for _ in range(2)]
        for index in range(KEYS):
            stack.start_worker(index)
        channels = stack.start_channel_worker() if channel_worker else None
        url = stack.start_nginx(nodes) + "/v2/enqueue"
        timed = scenario(window_s)
        client = stack.redis.client()  # every call of 0.2 ms or more, kept for judging
        client.config_set("slowlog-log-slower-than", 200)
        client.config_set("slowlog-max-len", 100_000)
        client.slowlog_reset()
        client.config_resetstat()
        if fault is not None:
            threading.Timer(window_s / 2, fault, [stack]).start()
        sent, start = play(url, timed)
        wait_until(lambda: backlog(stack) == 0, 60 * window_s, "the backlog to drain",
                   every=0.2)
        drained = time.time() - start
        found = judge(stack.sim_get("events")["events"], sent, drained, scale, len(timed))
        counts = stack.sim_get("stats")["counts"]
        found.update({name: int(counts.get(name, 0))
                      for name in ("misrouted", "orphans", "late_triggers")})
        found["after_load_s"] = drained - timed[-1][0]  # wall seconds after the last event
        found.update(longest_script(client))
        if channels is not None:  # what the channel worker cost, beside the storm
            import channels_bench
            found["channel_worker_cpu_s"] = channels_bench.cpu_s(channels.popen.pid)
            found.update(channels_bench.waiting(stack))
        return found
    finally:
        stack.close()


def longest_script(client: Any) -> dict[str, Any]:
    """Redis's longest script call in the slow log (kept from 0.2 ms), named, and how
    many took 5 ms or more (the goal: none; issue 24)."""
    import hashlib

    import relay.scripts
    import worker.lanes
    import worker.purge
    named = {hashlib.sha1(text.encode()).hexdigest(): name
             for module in (relay.scripts, worker.lanes, worker.purge)
             for name, text in vars(module).items()
             if name.isupper() and isinstance(text, str) and "redis.call" in text}
    commands = [(int(entry["duration"]), entry["command"].decode(errors="replace")
                 if isinstance(entry["command"], bytes) else str(entry["command"]))
                for entry in client.slowlog_get(100_000)]  # (redis-py leaves it bytes)
    calls = [(duration, named.get(command.split()[1], "?")) for duration, command in commands
             if command.startswith(("EVALSHA ", "EVAL "))]
    longest = max(calls, default=(0, "none over 0.2 ms"))
    stats = client.info("commandstats")
    total = sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("evalsha", "eval"))
    return {"longest_script_ms": longest[0] / 1000, "longest_script": longest[1],
            "scripts_over_5ms": sum(1 for duration, _ in calls if duration >= 5000),
            "script_calls": total}


def judge(arrived: list[dict[str, Any]], sent: Sent, drained_s: float, scale: float,
          offered: int) -> dict[str, Any]:
    """Time to page for the critical triggers, requests spent, order and losses."""
    delivered: dict[str, list[tuple[str, int]]] = defaultdict(list)  # in arrival order
    first_at: dict[str, float] = {}
    for entry in arrived:
        if entry["status"] != 202:
            continue
        key, action = entry["dedup_key"], entry["event_action"]
        seq = (entry.get("custom_details") or {}).get("seq", 0)
        delivered[key].append((action, seq))
        if action == "trigger":
            first_at.setdefault(key, entry["at"])
    waits = sorted((first_at[key] - at) * scale for (key, seq), at in sent.accepted.items()
                   if key.startswith("crit-") and seq == 1 and key in first_at)
    out_of_order = sum(1 for steps in delivered.values()
                       if [s for a, s in steps if a == "trigger"] !=
                       sorted(s for a, s in steps if a == "trigger")
                       or ("resolve", 0) in steps and steps[-1] != ("resolve", 0))
    seen = {(key, seq) for key, steps in delivered.items() for action, seq in steps
            if action == "trigger"} | {(key, 0) for key, steps in delivered.items()
                                       if ("resolve", 0) in steps}
    latest: dict[str, int] = {}
    for key, seq in sent.accepted:
        latest[key] = max(latest.get(key, 0), seq)
    # lost: an incident's newest trigger or its resolve never reached PagerDuty (repeats
    # before the newest may be merged into it)
    lost = sum(1 for key, top in latest.items() if (key, top) not in seen) + sum(
        1 for key, seq in sent.accepted if seq == 0 and (key, 0) not in seen)
    return {
        "offered": offered, "refused": sent.refused,
        "critical_p50_s": statistics.median(waits) if waits else None,
        "critical_p99_s": waits[min(len(waits) - 1, int(len(waits) * 0.99))] if waits else None,
        "critical_paged": len(waits),
        "requests": len(arrived),
        "delivered": sum(1 for e in arrived if e["status"] == 202),
        "not_sent": len(set(sent.accepted) - seen),  # merged (or lost, counted above)
        "drained_s": drained_s * scale,
        "out_of_order": out_of_order, "lost": lost,
        "duplicates": sum(1 for e in arrived if e["status"] == 202) - len(seen),
        "accepted": len(sent.accepted), "arrived": len(seen & set(sent.accepted)),
    }
