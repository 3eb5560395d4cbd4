"""pd-relay fault drills: a fault under load, then a count of what survived.

Each drill builds a stack on 127.0.0.1 (redis-server with AOF, the PagerDuty simulator,
two ingress nodes behind nginx, two worker processes each serving every key: ``pd-relay
worker --keys all --prefer 1/2`` and ``2/2``, as the stack runs them), sends incidents (trigger,
acknowledge, resolve) through nginx at a steady rate, with clients that retry only on
502, 503 and connection errors, breaks something in the middle, repairs it, and waits
for the backlog to drain. It reports accepted, delivered, duplicates, lost, order
violations (an incident whose events did not arrive trigger, acknowledge, resolve; a
follow-up before its trigger; a trigger after its follow-up) and misrouted follow-ups
(on another key than their trigger: PagerDuty drops them). The storm drill plays the
storm of ``scripts/bench --only storm`` instead (scripts/storm.py) and kills a worker in
it; with storm mode on, repeats that waited are merged (counted as merged repeats, not
lost: an incident's newest trigger and its resolve always arrive). Run through
``scripts/drill [--full] [--write] [--only NAME...]``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import failover
import failover_verdict
import heartbeats_drill
import history_drill
import requests
import storm
import upgrade
from bench import publish

from relay.keys import key_id
from relay.keys import new_key as make_key
from relay.settings import Settings
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import wait_until

ACTIONS = failover_verdict.ACTIONS  # the steps of each incident, in the order sent
FAULT_S = 8.0  # a stall or freeze: longer than the drill stack's lease (3 s) and every
# ingress timeout (3 x RELAY_REDIS_TIMEOUT_S = 6 s)


class Load(threading.Thread):
    """Sends incidents at ``rate`` events/s until stopped; records what got a 202."""

    def __init__(self, url: str, rate: float, tag: str,
                 severities: tuple[str, ...] = ("warning",), spread: int = 0) -> None:
        super().__init__(daemon=True)
        self.url, self.interval, self.tag = url, 1 / rate, tag
        self.severities = severities  # each incident's trigger: the next one in turn
        self.spread = spread  # 0: trigger, acknowledge, resolve one after the other
        self.accepted: list[str] = []
        self.refused = 0
        self.stopped = threading.Event()
        self.session = requests.Session()

    def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            step = n % 3  # an incident's follow-ups come `spread` incidents apart
            number = n // 3 - step * self.spread
            incident = f"{self.tag}-{number:05d}"
            event: dict[str, Any] = {"event_action": ACTIONS[step], "dedup_key": incident}
            if step == 0:
                event["payload"] = {"summary": f"drill {incident}", "source": "drill",
                                    "severity": self.severities[number % len(
                                        self.severities)],
                                    "custom_details": {"seq": f"{incident}/0"}}
            if number >= 0:
                self.send(event, f"{incident}/{step}")
            n += 1
            self.stopped.wait(self.interval)

    def send(self, event: dict[str, Any], seq: str) -> None:
        while True:  # a client retries 502, 503 and connection errors, nothing else
            try:
                reply = self.session.post(self.url, json=event, timeout=10)
                if reply.status_code == 202:
                    self.accepted.append(seq)
                    return
                if reply.status_code not in (502, 503):
                    raise RuntimeError(f"unexpected {reply.status_code}: {reply.text[:200]}")
            except requests.RequestException:
                pass
            self.refused += 1
            time.sleep(0.2)


def verdict(stack: Stack, load: Load) -> dict[str, int]:
    arrivals = [e for e in stack.sim_get("events")["events"] if e["status"] == 202]
    accepted = set(load.accepted)
    delivered, violations = failover_verdict.followed(arrivals)
    counts = stack.sim_get("stats")["counts"]
    wrong = sum(int(counts.get(name, 0)) for name in ("orphans", "late_triggers"))
    return {
        "accepted": len(accepted),
        "delivered": len(delivered & accepted),
        "duplicates": len(arrivals) - len(delivered),
        "lost": len(accepted - delivered),
        "order violations": violations + wrong,
        "misrouted": int(counts.get("misrouted", 0)),
        "client retries": load.refused,
    }


def build(workdir: Path, **env: Any) -> tuple[Stack, str]:
    settings = {"RELAY_RATE_PER_MIN": 100_000, "RELAY_LOG_LEVEL": "WARNING",
                "RELAY_LEASE_TTL_S": 3, "RELAY_CONNECT_TIMEOUT_S": 0.5,
                "RELAY_READ_TIMEOUT_S": 1.5}
    settings.update(env)
    stack = Stack(workdir, keys=3, **settings)
    stack.start_simulator()
    nodes = [stack.start_ingress().removeprefix("http://") for _ in range(2)]
    for share in (1, 2):
        stack.start_workers(share, 2, name=f"workers-{share}-{len(stack.processes)}")
    return stack, stack.start_nginx(nodes) + "/v2/enqueue"


def workers_of(stack: Stack, index: int) -> list[Any]:
    return [p for p in stack.processes if p.name.startswith(f"worker-{index}-") and p.alive()]


def processes(stack: Stack) -> list[Any]:
    """The live worker processes serving every key."""
    return [p for p in stack.processes if p.name.startswith("workers-") and p.alive()]


def holder_of(stack: Stack, index: int) -> Any:
    """The worker process holding key ``index``'s lease (waits for one to)."""
    client, name = stack.redis.client(), f"pdr:lease:{key_id(stack.keys[index])}"

    def found() -> Any:
        holder = str(client.get(name) or "")
        return next((p for p in processes(stack)
                     if holder.split(":")[1:2] == [str(p.popen.pid)]), None)

    return wait_until(found, 15, f"a process holding key {index}'s lease")


def restart(stack: Stack, process: Any) -> None:
    """A worker process like ``process`` (its share of the keys), started anew."""
    share = int(process.name.split("-")[1])
    stack.start_workers(share, 2, name=f"workers-{share}-{len(stack.processes)}")


def storm_drill(workdir: Path, full: bool) -> dict[str, Any]:
    """The storm of ``scripts/bench --only storm`` (scripts/storm.py), with key 0's
    worker killed -9 halfway through it and restarted after 2 s."""
    killed: list[int] = []

    def kill(stack: Stack) -> None:
        victims = workers_of(stack, 0)
        for process in victims:
            process.kill()
        killed.append(len(victims))
        time.sleep(2)
        stack.start_worker(0)

    found = storm.run(workdir, 4.0 if full else 10.0, fault=kill,  # storm mode's default
                      RELAY_STORM_MODE="backlog",
                      RELAY_STORM_AFTER_S=Settings().storm_after_s)
    if not killed or not killed[0]:
        raise RuntimeError("the storm drill killed no worker: its fault did not happen")
    return {"drill": "storm", "accepted": found["accepted"], "delivered": found["arrived"],
            "merged repeats": found["not_sent"] - found["lost"],
            "duplicates": found["duplicates"], "lost": found["lost"],
            "order violations": found["out_of_order"] + found["orphans"]
            + found["late_triggers"],
            "misrouted": found["misrouted"], "client retries": found["refused"],
            "PagerDuty errors": found["requests"] - found["delivered"],
            "drained after load (s)": f"{found['after_load_s']:.0f}"}


def drill(name: str, workdir: Path, seconds: float, rate: float) -> dict[str, Any]:
    env: dict[str, Any] = {}
    if name == "throttle":  # the relay thinks 60 per 5 s; PagerDuty allows 25
        env = {"RELAY_RATE_PER_MIN": 60, "RELAY_RATE_WINDOW_S": 5}
    stack, url = build(workdir, **env)
    try:
        if name == "throttle":
            stack.sim_config(limit=25, window_s=5)
        if name in ("worker-kill", "worker-freeze"):
            stack.sim_config(slow_rate=0.5, slow_s=0.3)  # so a fault lands mid-delivery
        if name == "worker-freeze":  # a third process: a standby while two are frozen
            stack.start_workers(1, 2, name=f"workers-1-{len(stack.processes)}")
        load = Load(url, rate, name)
        load.start()
        time.sleep(seconds / 3)
        started = time.monotonic()
        if name == "worker-kill":  # the process delivering key 0, and its other keys
            victim = holder_of(stack, 0)
            victim.kill()
            time.sleep(2)
            restart(stack, victim)
        elif name == "ingress-kill":
            node = next(p for p in stack.processes if p.name.startswith("ingress-"))
            node.kill()
            time.sleep(seconds / 3)
        elif name == "redis-kill":
            stack.sim_config(fail_rate=1.0, fail_status=503)  # let a backlog build up
            time.sleep(3)
            backlog = sum(row["queued"] + row["in_flight"] for row in stack.status())
            stack.redis.kill()
            time.sleep(3)
            stack.redis.start()
            stack.sim_config(fail_rate=0.0)
        elif name == "redis-full":  # a backlog, then Redis at its maxmemory, left there
            stack.sim_config(fail_rate=1.0, fail_status=503)
            time.sleep(3)
            backlog = sum(row["queued"] + row["in_flight"] for row in stack.status())
            client = stack.redis.client()
            client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 1024)
            stack.sim_config(fail_rate=0.0)
            time.sleep(FAULT_S)
        elif name == "pd-502":
            stack.sim_config(fail_rate=0.95, fail_status=502)
            time.sleep(seconds / 3)
            stack.sim_config(fail_rate=0.0)
        elif name == "pd-404":
            stack.sim_config(fail_rate=1.0, fail_status=404)
            time.sleep(seconds / 3)
            stack.sim_config(fail_rate=0.0)
        elif name == "redis-stall":  # every client's command waits longer than every timeout
            pause_ms = int(FAULT_S * 1000)
            stack.redis.client().execute_command("CLIENT", "PAUSE", pause_ms)
            time.sleep(FAULT_S)
        elif name == "worker-freeze":  # SIGSTOP two of three processes, past their lease
            first = holder_of(stack, 0)
            frozen = [first, next(p for p in processes(stack) if p is not first)]
            for process in frozen:
                process.popen.send_signal(signal.SIGSTOP)
            time.sleep(FAULT_S)
            for process in frozen:
                process.popen.send_signal(signal.SIGCONT)
        elif name == "keys-added":  # two keys added, the nodes restarted one at a time
            stack.write_keys(stack.keys + [make_key(), make_key()])
            for process in processes(stack):  # they read the keys file again
                process.popen.send_signal(signal.SIGHUP)
            for node in [p for p in stack.processes if p.name.startswith("ingress-")]:
                port = int(node.name.split("-")[1])
                node.terminate()
                stack.start_ingress(port)
        fault_s = time.monotonic() - started
        time.sleep(max(0.0, seconds / 3 - fault_s) + seconds / 3)
        load.stopped.set()
        load.join(30)

        def drained() -> bool:
            arrivals = stack.sim_get("events")["events"]
            seqs = {failover_verdict.seq_of(e) for e in arrivals if e["status"] == 202}
            return set(load.accepted) <= seqs

        load_stopped = time.monotonic()
        try:
            wait_until(drained, 120, "the backlog to drain", every=0.5)
            drain = f"{time.monotonic() - load_stopped:.0f}"
        except AssertionError:
            drain = "> 120"  # what is still missing is reported as lost below
        row = {"drill": name, **verdict(stack, load), "drained after load (s)": drain}
        counts = stack.sim_get("stats")["counts"]
        row["PagerDuty errors"] = sum(int(v) for k, v in counts.items()
                                      if k.isdigit() and k != "202")
        if name in ("redis-kill", "redis-full"):
            row["drill"] = f"{name} (backlog {backlog})"
        return row
    finally:
        stack.close()


DRILLS = {
    "worker-kill": "kill -9 the worker process delivering key 0 (and its share of the "
                   "other keys) mid-delivery, restart it after 2 s",
    "ingress-kill": "kill -9 one of two ingress nodes; nginx routes around it",
    "redis-kill": "PagerDuty down, then kill -9 Redis with a backlog, restart it from its "
                  "AOF after 3 s",
    "redis-full": "PagerDuty down for 3 s, then Redis's maxmemory set below its use and "
                  "left there: new events 503 until the workers have drained the backlog",
    "pd-502": "PagerDuty answers 502 to 95% of requests for a third of the run",
    "throttle": "PagerDuty throttles at 25 per 5 s while the relay is set to 60",
    "redis-stall": "CLIENT PAUSE: every Redis command waits 8 s, past every timeout",
    "worker-freeze": "SIGSTOP two of three worker processes (the one delivering key 0 "
                     "among them) for 8 s (lease 3 s), mid-delivery",
    "keys-added": "two keys added to the keys file mid-incident, ingress nodes restarted "
                  "one at a time, the worker processes told by SIGHUP",
    "pd-404": "PagerDuty's URL answers 404 for a third of the run (a wrong URL), then fixed",
    "storm": "the storm of scripts/bench --only storm (300 flapping incidents, 60 critical; "
             "PagerDuty's time 10x faster; storm mode backlog), key 0's worker killed -9 "
             "halfway and restarted",
    "failover": "three hosts (network namespaces: Redis, a Sentinel and the relay on each), "
                "the primary's host killed -9, then cut off for 20 s and healed, then the "
                "host of key 0's worker killed -9 as a backlog drains (root only)",
    "heartbeats": "checks (period 3 s, grace 2 s) going silent and back under three "
                  "evaluators (channel workers), pings exactly at the deadline, the relay's "
                  "processes killed -9 mid-outage and restarted 3 s later; pages counted",
    "history": "PostgreSQL (RELAY_HISTORY_DSN, two exporters) stopped for 60 s under load, "
               "then started again: PagerDuty's delivery unaffected, and every accepted "
               "event's record in PostgreSQL once it is back",
    "upgrade": "the previous release (by its tag, else its commit) under load, storm "
               "mode's lanes holding a backlog (PagerDuty failing 70%), its workers then "
               "ingress nodes replaced one at a time by this release's, then back (a rollback)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="75 s under load per drill")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    parser.add_argument("--only", nargs="*", default=[], choices=list(DRILLS))
    args = parser.parse_args()
    seconds, rate = (75.0, 30.0) if args.full else (15.0, 20.0)
    started = time.monotonic()
    rows, failover_rows = [], []
    names = args.only or list(DRILLS)
    skipped = failover_verdict.skipped() if "failover" in names else ""
    if skipped:
        print(f"failover: skipped: {skipped}", flush=True)
        names = [name for name in names if name != "failover"]
        if not names:
            return 2  # as when a tool could not be installed: skipped, not failed
    with tempfile.TemporaryDirectory(prefix="pd-relay-drill-") as tmp:
        for n, name in enumerate(names):
            print(f"{name}: {DRILLS[name]}...", flush=True)
            if name == "failover":
                failover_rows = failover.run(Path(tmp) / str(n), args.full)
                continue
            if name == "storm":
                row = storm_drill(Path(tmp) / str(n), args.full)
            elif name == "heartbeats":
                row = heartbeats_drill.run(Path(tmp) / str(n), seconds, build)
            elif name == "history" and history_drill.skipped():
                print(f"history: skipped: {history_drill.skipped()}", flush=True)
                continue
            elif name == "history":
                row = history_drill.run(Path(tmp) / str(n), seconds, rate, build,
                                        lambda url: Load(url, rate, "history"), verdict)
            elif name == "upgrade":
                row = upgrade.run(Path(tmp) / str(n), seconds, rate, lambda url: Load(
                    url, rate, "upgrade", ("critical", "error", "warning", "info"),
                    spread=10), verdict)  # each incident over 3 s: over a replacement
            else:
                row = drill(name, Path(tmp) / str(n), seconds, rate)
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "drill"))
            rows.append(row)
    mode = "full" if args.full else "short"
    if failover_rows:
        failover_verdict.publish_rows(mode, started, failover_rows, args.write)
    failed = [row["drill"] for row in failover_rows if failover.failed(row)]
    if not rows:
        return 1 if failed else 0
    columns = ["accepted", "delivered", "merged repeats", "duplicates", "lost",
               "order violations", "misrouted", "client retries", "PagerDuty errors",
               "drained after load (s)"]
    cells = [[f"{row['drill']}: {DRILLS[row['drill'].split()[0]]}",
              *(row.get(c, 0) for c in columns)] for row in rows]
    if [row["drill"].split()[0] for row in rows] == ["history"]:
        mode += " history"  # its own block in docs/BENCHMARKS.md
    publish("drill", mode, started,
            f"{seconds:.0f} s under load at {rate:.0f} events/s per drill. "
            "Goal for every drill: lost 0, order violations 0, misrouted 0 (heartbeats: lost "
            "is an outage never paged, and extra incidents 0; history: the record in "
            "PostgreSQL whole).",
            ["Drill", *columns], cells, args.write)
    failed += [row["drill"] for row in rows
               if row["lost"] or row["order violations"] or row["misrouted"]
               or row.get("extra incidents") or row.get("record missing")
               or row.get("record twice") or row.get("record lost")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
