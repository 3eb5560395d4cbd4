"""Three hosts for the failover drill (scripts/failover.py), each a network namespace
(relay.stack.netns) running redis-server (the primary on the first, replicas on the
others; a password; ``min-replicas-to-write 1``), a Sentinel (quorum 2) and the relay (an
ingress node and a worker process serving every key) against a Sentinel URL, with the
PagerDuty simulator in the world namespace outside them.

Until the relay reads ``redis+sentinel://`` URLs (relay/sentinel.py), the relay gets a
plain URL naming the first host's Redis: the harness runs, and the scenarios show what a
relay without Sentinel does when that host goes.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from typing import Any

import redis
import requests
from redis.sentinel import Sentinel

from relay.keys import key_id, new_key
from relay.stack.binaries import redis_server
from relay.stack.model import ingress_args, simulator_args, workers_args
from relay.stack.netns import WORLD_ADDRESS, Network
from relay.stack.processes import Process, pd_relay, wait_until

SERVICE = "pdr"
REDIS_PORT, SENTINEL_PORT, INGRESS_PORT, SIM_PORT = 6379, 26379, 8080, 8000


def sentinel_support() -> bool:
    """Whether this relay reads ``redis+sentinel://`` URLs."""
    return importlib.util.find_spec("relay.sentinel") is not None


class Cluster:
    """``start`` brings it up (the caller's thread inside ``net.world``), ``close`` ends it."""

    def __init__(self, workdir: Path, limit: int, window_s: float, keys: int = 3,
                 **env: Any) -> None:
        self.workdir, self.limit, self.window_s = workdir, limit, window_s
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True)
        self.password = secrets.token_hex(16)
        self.keys = [new_key() for _ in range(keys)]
        self.keys_file = workdir / "keys.txt"
        self.keys_file.write_text("\n".join(self.keys) + "\n")
        self.keys_file.chmod(0o600)
        self.net = Network()
        self.hosts = self.net.hosts
        self.sentinel = sentinel_support()
        self.extra = {name: str(value) for name, value in env.items()}
        self.workers: dict[str, Process] = {}
        self.sim_url = f"http://{WORLD_ADDRESS}:{SIM_PORT}"

    # -- configuration -----------------------------------------------------------------
    def redis_url(self) -> str:
        if self.sentinel:
            nodes = ",".join(f"{self.net.address(h)}:{SENTINEL_PORT}" for h in self.hosts)
            return f"redis+sentinel://:{self.password}@{nodes}/{SERVICE}/0"
        return f"redis://:{self.password}@{self.net.address(self.hosts[0])}:{REDIS_PORT}/0"

    def write(self, host: str, name: str, lines: list[str]) -> Path:
        home = self.workdir / host.split("-")[1]
        home.mkdir(exist_ok=True)
        path = home / name
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)  # the password is in it
        return path

    def redis_conf(self, host: str) -> Path:
        home = self.workdir / host.split("-")[1] / "data"
        home.mkdir(parents=True, exist_ok=True)
        primary = self.net.address(self.hosts[0])
        return self.write(host, "redis.conf", [
            "bind 0.0.0.0", f"port {REDIS_PORT}", "protected-mode no", f"dir {home}",
            "appendonly yes", "appendfsync everysec", 'save ""',
            f"requirepass {self.password}", f"masterauth {self.password}",
            "min-replicas-to-write 1", "min-replicas-max-lag 5",
            *([f"replicaof {primary} {REDIS_PORT}"] if host != self.hosts[0] else [])])

    def sentinel_conf(self, host: str) -> Path:
        primary = self.net.address(self.hosts[0])
        return self.write(host, "sentinel.conf", [
            "bind 0.0.0.0", f"port {SENTINEL_PORT}", "protected-mode no",
            f"sentinel monitor {SERVICE} {primary} {REDIS_PORT} 2",
            f"sentinel auth-pass {SERVICE} {self.password}",
            f"sentinel down-after-milliseconds {SERVICE} 1500",
            f"sentinel failover-timeout {SERVICE} 6000",
            f"sentinel parallel-syncs {SERVICE} 2"])

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "RELAY_KEYS_FILE": str(self.keys_file), "RELAY_REDIS_URL": self.redis_url(),
            "RELAY_PD_URL": self.sim_url, "RELAY_MIN_REPLICAS": "1",
            "RELAY_RATE_PER_MIN": str(self.limit), "RELAY_RATE_WINDOW_S": str(self.window_s),
            # the lease outlasts a send (2 s) and its WAIT for replicas (0.5 s) by 1 s
            "RELAY_LEASE_TTL_S": "4", "RELAY_CONNECT_TIMEOUT_S": "0.5",
            "RELAY_READ_TIMEOUT_S": "1.5", "RELAY_RETRY_BASE_S": "0.05",
            "RELAY_RETRY_MAX_S": "0.5", "RELAY_LOG_LEVEL": "INFO",
            "RELAY_ALLOW_ANONYMOUS": "true"})
        env.update(self.extra)
        return env

    # -- processes ---------------------------------------------------------------------
    def start(self) -> None:
        """Everything up and ready, once ``net`` is up; the calling thread must be in
        ``net.world``."""
        env, binary = self.env(), redis_server()
        self.net.start(self.net.world, "simulator", pd_relay() + simulator_args(
            WORLD_ADDRESS, SIM_PORT, self.limit, self.window_s), env, self.logs)
        for host in self.hosts:
            name = host.split("-")[1]
            self.net.start(host, f"redis-{name}", [binary, str(self.redis_conf(host))],
                           env, self.logs)
            self.net.start(host, f"sentinel-{name}",
                           [binary, str(self.sentinel_conf(host)), "--sentinel"], env,
                           self.logs)
        wait_until(lambda: requests.get(self.sim_url + "/_sim/stats", timeout=1).ok, 15,
                   "the simulator")
        wait_until(lambda: self.data(self.hosts[0]).info("replication")[
            "connected_slaves"] == len(self.hosts) - 1, 20, "the replicas to connect")
        wait_until(self.sentinels_agree, 20, "the Sentinels to see each other")
        nodes = []
        for n, host in enumerate(self.hosts, 1):
            name = host.split("-")[1]
            nodes.append(self.net.start(host, f"ingress-{name}", pd_relay() + ingress_args(
                "0.0.0.0", INGRESS_PORT), env, self.logs))
            self.workers[host] = self.net.start(
                host, f"worker-{name}", pd_relay() + workers_args(n, len(self.hosts)), env,
                self.logs)
        for url, node, host in zip(self.ingress_urls(), nodes, self.hosts, strict=True):
            wait_until(lambda u=url, p=[node, self.workers[host]]: _answers(u, p), 30,
                       f"the ingress node {url}")

    def close(self) -> None:
        self.net.close()

    # -- looking at it -----------------------------------------------------------------
    def ingress_urls(self, hosts: list[str] | None = None) -> list[str]:
        return [f"http://{self.net.address(h)}:{INGRESS_PORT}" for h in hosts or self.hosts]

    def data(self, host: str) -> redis.Redis:
        return redis.Redis(host=self.net.address(host), port=REDIS_PORT,
                           password=self.password, socket_timeout=1,
                           socket_connect_timeout=1, decode_responses=True)

    def sentinels_agree(self) -> bool:
        for host in self.hosts:
            client = redis.Redis(host=self.net.address(host), port=SENTINEL_PORT,
                                 socket_timeout=1, decode_responses=True)
            state = client.sentinel_master(SERVICE)
            if int(state["num-other-sentinels"]) < len(self.hosts) - 1 or \
                    int(state["num-slaves"]) < len(self.hosts) - 1:
                return False
        return True

    def primary(self, among: list[str] | None = None) -> str:
        """The host the Sentinels of ``among`` (default all) name as primary."""
        sentinel = Sentinel([(self.net.address(h), SENTINEL_PORT) for h in among or self.hosts],
                            socket_timeout=0.5)
        address, _ = sentinel.discover_master(SERVICE)
        return next(h for h in self.hosts if self.net.address(h) == address)

    def role(self, host: str) -> str:
        return str(self.data(host).execute_command("ROLE")[0])

    def lease_holder(self, index: int) -> str:
        """The host whose worker holds key ``index``'s lease (waits for one to)."""
        name = f"pdr:lease:{key_id(self.keys[index])}"

        def found() -> str | None:
            holder = str(self.data(self.primary()).get(name) or "")
            return next((h for h, w in self.workers.items()
                         if holder.split(":")[1:2] == [str(w.popen.pid)]), None)

        return str(wait_until(found, 15, f"a worker holding key {index}'s lease"))

    def sim_get(self, what: str) -> Any:
        return requests.get(f"{self.sim_url}/_sim/{what}", timeout=5).json()

    def sim_config(self, **faults: Any) -> None:
        requests.post(f"{self.sim_url}/_sim/config", json=faults, timeout=5).raise_for_status()


def _answers(url: str, processes: list[Process]) -> bool:
    """Whether the node at ``url`` answers /healthz; an error with the log's end of a
    process of its host that ended (a refused configuration), not a wait to the bound."""
    for process in processes:
        if not process.alive():
            tail = process.log.read_text(errors="replace").splitlines()[-3:]
            raise RuntimeError(f"{process.name} ended: " + " / ".join(tail))
    return bool(requests.get(url + "/healthz", timeout=1).ok)
