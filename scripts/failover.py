"""The failover drill (``scripts/drill --only failover``, root only): three hosts made of
network namespaces (scripts/failover_hosts.py), each with Redis, a Sentinel and the relay,
under a steady load of incidents sent to every host's ingress in turn by clients in the
world namespace that retry on 502, 503 and connection errors (on the next host). Each
scenario runs on a fresh set-up:

- ``primary-kill``: kill -9 every process of the primary's host mid-load, link down;
- ``primary-cut``: cut the primary's host off the bridge for 20 s while a client inside it
  keeps sending to its own ingress, then heal it: it must come back as a replica, and
  nothing it answered 202 to may be lost;
- ``lease-kill``: PagerDuty failing for a while (a backlog), then, as it drains, kill -9
  the host whose worker holds a key's lease (a replica's host when one holds a lease:
  the primary's is the first scenario's).

Each reports the counts of scripts/failover_verdict.py; one fails on a lost event, an
order violation, a misrouted follow-up, a key over its limit or a cut host that did not
come back as a replica. Goals reported against: 202 again within 10 s of the primary
dying, delivery within 15 s.
"""

from __future__ import annotations

import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import failover_verdict
import requests
from failover_hosts import INGRESS_PORT, Cluster
from failover_verdict import ACTIONS, disorders, seq_of, tally
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

from relay.stack import netns
from relay.stack.processes import wait_until

SCENARIOS = {
    "primary-kill": "kill -9 every process of the primary's host mid-load, its link down",
    "primary-cut": "the primary's host cut off the bridge for 20 s, its own client sending "
                   "to it, then healed",
    "lease-kill": "PagerDuty down 5 s (a backlog), then kill -9 the host of a worker "
                  "holding a key's lease as it drains (a replica's host if one holds one)",
}


class Abortive(HTTPAdapter):
    """Connections closed with a reset (SO_LINGER 0): a request given up on (a timeout, a
    host cut off) is dropped with its socket, not retransmitted by the kernel until the
    path heals and landed long after the client sent the incident's next event
    elsewhere (seen in this drill: an acknowledge stored 30 s late, after its resolve)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = [*HTTPConnection.default_socket_options,
                                    (socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))]
        super().init_poolmanager(*args, **kwargs)


class Clients(threading.Thread):
    """Sends incidents (trigger, acknowledge, resolve, one after the other) at ``rate``
    events/s from namespace ``ns``, each event to the next of ``urls``, retrying 502, 503
    and connection errors on the next; records each 202's time by sequence number."""

    def __init__(self, ns: str, urls: list[str], rate: float, tag: str) -> None:
        super().__init__(daemon=True, name=f"clients-{tag}")
        self.ns, self.urls, self.interval, self.tag = ns, urls, 1 / rate, tag
        self.accepted: dict[str, float] = {}
        self.refused = 0
        self.unexpected: list[str] = []
        self.stopped = threading.Event()
        self.turn = 0

    def run(self) -> None:
        netns.enter(self.ns)  # this thread only
        session = requests.Session()
        session.mount("http://", Abortive())
        n = 0
        while not self.stopped.is_set():
            incident, step = f"{self.tag}-{n // 3:05d}", n % 3
            event: dict[str, Any] = {"event_action": ACTIONS[step], "dedup_key": incident}
            if step == 0:
                event["payload"] = {"summary": f"failover drill {incident}",
                                    "source": "drill", "severity": "warning"}
            if not self.send(session, event):
                return
            n += 1
            self.stopped.wait(self.interval)

    def send(self, session: requests.Session, event: dict[str, Any]) -> bool:
        while not self.stopped.is_set():
            url = self.urls[self.turn % len(self.urls)] + "/v2/enqueue"
            self.turn += 1
            try:
                reply = session.post(url, json=event, timeout=(0.3, 3))  # a bridge: µs
                if reply.status_code == 202:
                    self.accepted[seq_of(event)] = time.time()
                    return True
                if reply.status_code not in (502, 503):
                    self.unexpected.append(f"{reply.status_code} {reply.text[:200]}")
                    return False
            except requests.RequestException:
                pass
            self.refused += 1
            self.stopped.wait(0.1)
        return False


def scenario(name: str, workdir: Path, full: bool) -> dict[str, Any]:
    window_s = 60.0 if full else 10.0
    limit = 120 if full else 20  # per key and window: 2 events/s, 6 for the 3 keys
    cluster = Cluster(workdir, limit, window_s)
    row: dict[str, Any] = {}
    try:
        cluster.net.up()
        with netns.inside(cluster.net.world):
            cluster.start()
            row = drive(name, cluster, full)
            return row
    finally:
        cluster.close()
        if not row or failed(row):  # the processes' logs, kept for a look
            kept = Path(tempfile.mkdtemp(prefix=f"pd-relay-failover-{name}-"))
            shutil.copytree(cluster.logs, kept / "logs")
            print(f"    logs kept in {kept}/logs", flush=True)


def drive(name: str, cluster: Cluster, full: bool) -> dict[str, Any]:
    warm, after = (20.0, 60.0) if full else (8.0, 20.0)
    clients = [Clients(cluster.net.world, cluster.ingress_urls(), 3.5, f"{name}-w{n}")
               for n in (1, 2)]  # 7 events/s offered: over the 6 the limits allow
    start = time.time()
    for client in clients:
        client.start()
    time.sleep(warm)
    row: dict[str, Any] = {"drill": name, "about": SCENARIOS[name], "relay's Redis URL":
                           "Sentinel" if cluster.sentinel else "plain (no Sentinel yet)"}
    primary = cluster.primary()
    if name == "primary-kill":
        row["killed"] = cluster.net.kill(primary)
        row["host killed"] = "the primary's"
        row["killed at (s)"] = f"{time.time() - start:.1f}"
        time.sleep(after)
    elif name == "primary-cut":
        own = Clients(primary, [f"http://127.0.0.1:{INGRESS_PORT}"], 2.0, f"{name}-own")
        own.start()
        clients.append(own)
        cluster.net.cut(primary)
        row["cut at (s)"] = f"{time.time() - start:.1f}"
        time.sleep(20)
        cluster.net.heal(primary)
        healed = time.time()
        try:
            wait_until(lambda: cluster.role(primary) == "slave", 30, "the cut host to rejoin",
                       every=0.2)
            row["rejoined as replica (s)"] = f"{time.time() - healed:.0f}"
        except AssertionError:
            row["rejoined as replica (s)"] = "no"
        time.sleep(max(0.0, after - (time.time() - healed)))
    elif name == "lease-kill":
        cluster.sim_config(fail_rate=1.0, fail_status=503)
        time.sleep(5)
        cluster.sim_config(fail_rate=0.0)
        time.sleep(1)
        holders = [cluster.lease_holder(n) for n in range(len(cluster.keys))]
        # a replica's host if one holds a lease (the primary's is primary-kill's)
        key = next((n for n, h in enumerate(holders) if h != primary), 0)
        victim = holders[key]
        row["key"] = key
        row["killed"] = cluster.net.kill(victim)
        row["killed at (s)"] = f"{time.time() - start:.1f}"
        row["host killed"] = "the primary's" if victim == primary else "a replica's"
        time.sleep(after)
    load_end = time.time()
    for client in clients:
        client.stopped.set()
    for client in clients:
        client.join(10)
    accepted = {seq: at for client in clients for seq, at in client.accepted.items()}

    def drained() -> bool:
        seen = {seq_of(e) for e in cluster.sim_get("events")["events"]
                if e["status"] == 202 and e["kind"] == "alert"}
        return set(accepted) <= seen

    try:
        wait_until(drained, 180 if full else 90, "the backlog to drain", every=0.5)
    except AssertionError:
        pass  # what is missing is counted as lost
    end = time.time()
    found = tally(accepted, cluster.sim_get("events")["events"],
                  cluster.sim_get("stats")["counts"], cluster.limit, cluster.window_s,
                  start, load_end, end)
    row.update(found)
    for incident, arrived in list(disorders(cluster.sim_get("events")["events"],
                                                  start).items())[:5]:
        print(f"    out of order: {incident}: {' '.join(arrived)}", flush=True)
    if name == "primary-cut":
        seen = {seq_of(e) for e in cluster.sim_get("events")["events"] if e["status"] == 202}
        row["lost of the cut host's 202s"] = len(set(clients[-1].accepted) - seen)
    row["limit"] = f"{cluster.limit} per {cluster.window_s:.0f} s"
    row["client retries"] = sum(c.refused for c in clients)
    row["unexpected answers"] = sum(len(c.unexpected) for c in clients)
    row["drained after load (s)"] = f"{end - load_end:.0f}"
    return row


def failed(row: dict[str, Any]) -> bool:
    """The verdict's failures, an answer no client expected, or a cut host that did not
    come back as a replica."""
    return failover_verdict.failed(row) or bool(row["unexpected answers"]) \
        or row.get("rejoined as replica (s)") == "no"


def run(workdir: Path, full: bool, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Every scenario (or ``only`` those), each on a fresh set-up; a SIGTERM ends the
    run through the same clean-up as an error (namespaces and processes removed)."""
    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        rows = []
        for n, name in enumerate(only or list(SCENARIOS)):
            print(f"  failover {name}: {SCENARIOS[name]}...", flush=True)
            row = scenario(name, workdir / f"failover-{n}", full)
            print("    " + ", ".join(f"{k} {v}" for k, v in row.items()
                                  if k not in ("drill", "about")),
                  flush=True)
            rows.append(row)
        return rows
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
