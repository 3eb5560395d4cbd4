"""Many keys delivered by a few worker processes (issue 26), for ``scripts/bench --only
keys-delivery``: each key's rate budget used in a backlog, 429s, the workers' memory and
CPU; and what the processes cost idle with 1,000 keys.

PagerDuty's window is scaled down with its limit (``limit`` per ``window_s``: the same
two sends a second per key as PagerDuty's 120 a minute when 20 per 10 s), so the run is
short and the rate per key is PagerDuty's. Every key has a backlog of more than
``windows`` windows' worth; its budget used is what it sent in the ``windows`` windows
from its first send, over ``windows * limit`` (the relay's window is 1% longer than
PagerDuty's: relay/limiter.py, so 100% is the most it can send).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import Process, wait_until

BATCH = 100


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backlog(stack: Stack, per_key: int, senders: int = 4) -> int:
    """``per_key`` events for every key, posted in batches of ``BATCH`` from a few
    threads; returns how many were accepted."""
    bodies = []
    for i in range(per_key):
        for n, key in enumerate(stack.keys):
            bodies.append({"event_action": "trigger", "routing_key": key,
                           "dedup_key": f"k{n}-e{i}",
                           "payload": {"summary": f"key {n} event {i}", "source": "bench",
                                       "severity": "warning", "custom_details": {"seq": i}}})
    batches = [bodies[at:at + BATCH] for at in range(0, len(bodies), BATCH)]
    accepted = [0] * senders
    url = stack.ingress_urls[0] + "/v2/enqueue"

    def send(part: int) -> None:
        session = requests.Session()
        for batch in batches[part::senders]:
            reply = session.post(url, json=batch, timeout=30)
            if reply.status_code == 202:
                accepted[part] += len(batch)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return sum(accepted)


def delivery(workdir: Path, keys: int = 500, processes: int = 2, limit: int = 20,
             window_s: float = 10.0, windows: int = 3) -> dict[str, Any]:
    """The backlog run: budget used per key (min, median), 429s, worker RSS and CPU."""
    per_key = windows * limit + limit // 2
    stack = Stack(workdir, keys=keys, RELAY_RATE_PER_MIN=str(limit),
                  RELAY_RATE_WINDOW_S=str(window_s), RELAY_QUEUES_MAX_MB="1024")
    try:
        stack.start_simulator(limit=limit, window_s=window_s)
        stack.start_ingress()
        accepted = backlog(stack, per_key)
        workers = [stack.start_workers(i, processes) for i in range(1, processes + 1)]
        started = time.monotonic()
        cpu0 = {w.popen.pid: cpu_s(w.popen.pid) for w in workers}
        rss: dict[int, float] = defaultdict(float)
        span = windows * window_s

        def sample() -> bool:
            for w in workers:
                rss[w.popen.pid] = max(rss[w.popen.pid], rss_mb(w.popen.pid))
            return False

        # every key's first send, then its windows, then a little more
        deadline = started + span + 60
        while time.monotonic() < deadline:
            sample()
            time.sleep(3)
            if time.monotonic() - started > span + 5 and _all_spans_done(stack, span):
                break
        elapsed = time.monotonic() - started
        cpu = {pid: (cpu_s(pid) - cpu0[pid]) / elapsed for pid in cpu0}
        events = stack.sim_get("events")["events"]
        counts = stack.sim_get("stats")["counts"]
        sent: dict[str, list[float]] = defaultdict(list)
        for event in events:
            if event["status"] == 202:
                sent[event["routing_key"]].append(event["at"])
        used = []
        for key in stack.keys:
            times = sorted(sent.get(key, []))
            first = times[0] if times else 0.0
            used.append(sum(1 for at in times if at < first + span) / (windows * limit))
        return {
            "keys": keys, "processes": processes, "accepted": accepted,
            "budget_min": min(used), "budget_median": statistics.median(used),
            "throttled": int(counts.get("429", 0)),
            "rss_mb": [round(rss[w.popen.pid], 1) for w in workers],
            "cpu": [round(cpu[w.popen.pid], 3) for w in workers],
            "sends_per_s": sum(len(v) for v in sent.values()) / elapsed,
        }
    finally:
        stack.close()


def _all_spans_done(stack: Stack, span: float) -> bool:
    """Whether every key sent its first event more than ``span`` ago (simulator time)."""
    now = time.time()  # the simulator's clock: it runs on this machine
    firsts: dict[str, float] = {}
    for event in stack.sim_get("events")["events"]:
        firsts.setdefault(event["routing_key"], event["at"])
    return len(firsts) == len(stack.keys) and all(now - at > span + 1
                                                  for at in firsts.values())


def idle(workdir: Path, keys: int = 1000, processes: int = 2,
         seconds: float = 10.0) -> dict[str, Any]:
    """``processes`` worker processes serving ``keys`` keys, nothing to deliver: each
    one's RSS and CPU share once every lease is taken."""
    stack = Stack(workdir, keys=keys, RELAY_LEASE_TTL_S="15")
    try:
        workers: list[Process] = [stack.start_workers(i, processes)
                                  for i in range(1, processes + 1)]
        client = stack.redis.client()
        wait_until(lambda: all(client.get(f"pdr:lease:{kid}") for kid in _kids(stack)),
                   120, "every lease taken", every=1)
        time.sleep(2)  # the first ticks' prune passes
        cpu0 = {w.popen.pid: cpu_s(w.popen.pid) for w in workers}
        began = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - began
        return {
            "keys": keys, "processes": processes,
            "rss_mb": [round(rss_mb(w.popen.pid), 1) for w in workers],
            "cpu": [round((cpu_s(w.popen.pid) - cpu0[w.popen.pid]) / elapsed, 4)
                    for w in workers],
            "threads": [len(os.listdir(f"/proc/{w.popen.pid}/task")) for w in workers],
        }
    finally:
        stack.close()


def _kids(stack: Stack) -> list[str]:
    from relay.keys import key_id
    return [key_id(key) for key in stack.keys]
