"""Single processes on loopback, each with its own log file, and waiting for them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from relay.stack.binaries import redis_server
from relay.stack.render import redis_argv

HOST = "127.0.0.1"


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


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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


class RedisServer:
    def __init__(self, workdir: Path, logs: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.logs = logs
        self.process: Process | None = None
        self.url = f"redis://{HOST}:{self.port}/0"

    def start(self, *extra: str) -> None:
        argv = [*redis_argv(redis_server(), self.port, self.dir, HOST), *extra]
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
