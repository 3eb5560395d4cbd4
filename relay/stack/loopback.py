"""A whole stack on loopback, started piece by piece: redis-server, the PagerDuty
simulator, ``pd-relay ingress`` and ``worker`` processes, nginx. The end-to-end tests,
``scripts/bench`` and ``scripts/drill`` build it, then kill, freeze or reconfigure its
parts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from relay.keys import key_id, new_key
from relay.stack import render
from relay.stack.model import (
    channel_worker_args,
    ingress_args,
    simulator_args,
    worker_args,
    workers_args,
)
from relay.stack.processes import HOST, Process, RedisServer, free_port, pd_relay, wait_until


class LoopbackStack:
    """Everything but the redis-server is started on demand; ``close`` stops it all."""

    def __init__(self, workdir: Path, keys: int = 2, redis_url: str = "", **env: Any) -> None:
        """``redis_url``: use that Redis (a ``relay.stack.sentinels.SentinelGroup``'s, say)
        instead of starting one (``redis`` is then None)."""
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True)
        self.keys = [new_key() for _ in range(keys)]
        keys_file = workdir / "keys.txt"
        keys_file.write_text("# test keys\n" + "\n".join(self.keys) + "\n")
        keys_file.chmod(0o600)  # a secrets file: the relay refuses one others may read
        self.redis: RedisServer | None = None
        if not redis_url:
            self.redis = RedisServer(workdir, self.logs)
            self.redis.start()
            redis_url = self.redis.url
        self.sim_port = free_port()
        self.sim_url = f"http://{HOST}:{self.sim_port}"
        self.env = dict(os.environ)
        self.env.update({
            "RELAY_KEYS_FILE": str(keys_file),
            "RELAY_REDIS_URL": redis_url,
            "RELAY_PD_URL": self.sim_url,
            "RELAY_RETRY_BASE_S": "0.05",
            "RELAY_RETRY_MAX_S": "0.5",
            "RELAY_READ_TIMEOUT_S": "2",
            # a short lease, as takeovers are what many tests wait for: 1 + 2 s sends fit
            "RELAY_CONNECT_TIMEOUT_S": "1",
            "RELAY_LEASE_TTL_S": "5",
            "RELAY_LOG_LEVEL": "INFO",
            # tests of other things post without keys; the auth tests turn this off
            "RELAY_ALLOW_ANONYMOUS": "true",
        })
        self.env.update({name: str(value) for name, value in env.items()})
        self.processes: list[Process] = []
        self.ingress_urls: list[str] = []
        self.session = requests.Session()

    # -- processes ---------------------------------------------------------------------
    def start_simulator(self, limit: int = 10_000, window_s: float = 60) -> None:
        argv = pd_relay() + simulator_args(HOST, self.sim_port, limit, window_s)
        self.processes.append(Process("simulator", argv, self.env, self.logs))
        wait_until(lambda: self.sim_get("stats"), 10, "the simulator to answer")

    def release(self, tree: Path | None) -> tuple[list[str], dict[str, str]]:
        """How to run ``pd-relay`` (argv and environment): this release's, or (``tree``)
        the one whose source is in that directory, in the same interpreter (its imports
        come first from ``tree``, never from the working directory: PYTHONSAFEPATH)."""
        if tree is None:
            return pd_relay(), self.env
        return ([sys.executable, "-m", "relay.cli"],
                dict(self.env, PYTHONPATH=str(tree), PYTHONSAFEPATH="1"))

    def start_ingress(self, port: int | None = None, tree: Path | None = None) -> str:
        """Start an ingress node (on ``port``, to restart one in place; from ``tree``, see
        ``release``) and return its URL."""
        port = port or free_port()
        command, env = self.release(tree)
        argv = command + ingress_args(HOST, port)
        self.processes.append(Process(f"ingress-{port}", argv, env, self.logs))
        url = f"http://{HOST}:{port}"
        wait_until(lambda: requests.get(url + "/healthz", timeout=1).ok, 15, "ingress")
        if url not in self.ingress_urls:
            self.ingress_urls.append(url)
        return url

    def write_keys(self, keys: list[str]) -> None:
        """Change the keys file (processes started from now on read the new one)."""
        self.keys = keys
        (self.workdir / "keys.txt").write_text("\n".join(keys) + "\n")

    def start_worker(self, index: int, name: str = "", tree: Path | None = None) -> Process:
        command, env = self.release(tree)
        argv = command + worker_args(key_id(self.keys[index]))
        process = Process(name or f"worker-{index}-{len(self.processes)}", argv, env,
                          self.logs)
        self.processes.append(process)
        return process

    def start_workers(self, i: int = 1, n: int = 1, name: str = "",
                      tree: Path | None = None) -> Process:
        """A worker process serving every key (``--keys all``), process ``i`` of ``n``."""
        command, env = self.release(tree)
        process = Process(name or f"workers-{i}-{len(self.processes)}",
                          command + workers_args(i, n), env, self.logs)
        self.processes.append(process)
        return process

    def start_channel_worker(self, name: str = "") -> Process:
        argv = pd_relay() + channel_worker_args()
        process = Process(name or f"channel-worker-{len(self.processes)}", argv, self.env,
                          self.logs)
        self.processes.append(process)
        return process

    def start_history_exporter(self, *args: str, name: str = "") -> Process:
        """``pd-relay history-exporter [args]`` (RELAY_HISTORY_DSN from the stack's
        environment, never in argv): the history stream's entries into PostgreSQL."""
        process = Process(name or f"history-exporter-{len(self.processes)}",
                          pd_relay() + ["history-exporter", *args], self.env, self.logs)
        self.processes.append(process)
        return process

    def history_migrate(self) -> None:
        """``pd-relay history migrate``: the record's schema in RELAY_HISTORY_DSN's database."""
        done = self.cli("history", "migrate")
        if done.returncode:
            raise RuntimeError(f"pd-relay history migrate: {done.stderr.strip()[-2000:]}")

    def start_nginx(self, upstreams: list[str], name: str = "nginx",
                    limits: render.Limits = render.UNLIMITED) -> str:
        """nginx from the project's template, load-balancing ``upstreams`` (host:port);
        without per-client limits unless ``limits`` says (every test client is 127.0.0.1)."""
        binary = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if binary is None:
            raise RuntimeError("nginx is not installed")
        port = free_port()
        home = self.workdir / name
        main = render.nginx(home, f"{HOST}:{port}", upstreams, workers="1",
                            limits=limits)
        # SIGTERM: nginx's master stops its workers; a SIGKILLed master leaves them running
        self.processes.append(Process(name, render.nginx_argv(binary, main), self.env,
                                      self.logs, signal.SIGTERM))
        url = f"http://{HOST}:{port}"
        wait_until(lambda: requests.get(url + "/healthz", timeout=1).status_code < 500, 15,
                   "nginx")
        return url

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(pd_relay() + list(args), env=self.env, capture_output=True,
                              text=True, timeout=30)

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        if self.redis:
            self.redis.kill()

    def logs_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs.glob("*.log"))

    # -- talking to it -----------------------------------------------------------------
    def post(self, body: Any, path: str = "/v2/enqueue", url: str | None = None) -> Any:
        return self.session.post((url or self.ingress_urls[0]) + path, json=body, timeout=10)

    def sim_get(self, what: str) -> Any:
        return requests.get(f"{self.sim_url}/_sim/{what}", timeout=5).json()

    def sim_config(self, **faults: Any) -> None:
        requests.post(f"{self.sim_url}/_sim/config", json=faults, timeout=5).raise_for_status()

    def delivered(self) -> list[dict[str, Any]]:
        """The simulator's log of events it accepted (202), in arrival order."""
        return [e for e in self.sim_get("events")["events"] if e["status"] == 202]

    def status(self) -> list[dict[str, Any]]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)["keys"]
        return rows
