"""End to end: ./start.sh in native mode, in a temporary copy of the project, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from relay.stack.processes import Process, free_port, pd_relay, wait_until
from tests.conftest import make_key, trigger

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".venv", "run", "data", ".git", "*cache*", "*.egg-info")


def nginx_available() -> bool:
    on_path = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    return bool(on_path) or (os.geteuid() == 0 and bool(shutil.which("apt-get")))


def free_port_pair() -> int:
    for _ in range(50):
        base = free_port()
        if base < 65000:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + 1))
                return base
            except OSError:
                continue
    raise RuntimeError("no two free ports in a row")


def run(project: Path, env: dict[str, str], *args: str, timeout: float = 600
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["./start.sh", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


def pids(status_text: str) -> dict[str, int]:
    found = re.finditer(r"^(\S+)\s+RUNNING\s+pid (\d+)", status_text, re.M)
    return {match[1]: int(match[2]) for match in found}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "pd-relay"
    shutil.copytree(ROOT, copy, ignore=IGNORE)
    return copy


def test_start_refuses_a_keys_file_without_keys(project: Path) -> None:
    env = dict(os.environ, PD_RELAY_MODE="native")
    result = run(project, env, timeout=60)
    assert result.returncode != 0
    assert "holds no routing key" in result.stderr and "--demo" in result.stderr
    assert not (project / ".venv").exists()  # refused before installing anything


@pytest.mark.skipif(not nginx_available(), reason="needs nginx, or root to apt-get it")
def test_start_sh_runs_the_stack_supervises_it_and_stops_it(project: Path, tmp_path) -> None:
    keys = [make_key(), make_key()]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# test\n\n" + "\n".join(keys) + "\n")
    sim_port = free_port()
    simulator = Process("simulator", pd_relay() + ["simulator", "--port", str(sim_port)],
                        dict(os.environ), tmp_path)
    sim = f"http://127.0.0.1:{sim_port}"
    port = free_port()
    env = dict(
        os.environ, PD_RELAY_MODE="native", RELAY_KEYS_FILE=str(keys_file),
        RELAY_PD_URL=sim, PD_RELAY_PORT=str(port), PD_RELAY_BIND="127.0.0.1",
        PD_RELAY_INGRESS_PORT=str(free_port_pair()), PD_RELAY_REDIS_PORT=str(free_port()),
        RELAY_LEASE_TTL_S="3", RELAY_CONNECT_TIMEOUT_S="0.5", RELAY_READ_TIMEOUT_S="1.5",
    )
    env.pop("VIRTUAL_ENV", None)
    started = False
    try:
        result = run(project, env)
        assert result.returncode == 0, result.stdout + result.stderr
        started = True
        assert f"http://127.0.0.1:{port}/v2/enqueue" in result.stdout
        assert "curl" in result.stdout

        # status and `relay` talk to the stack that was started, not to what the shell
        # they run in says (before: Redis on 6379 and ./pd_routing_keys.txt)
        shell = {k: v for k, v in env.items()
                 if k not in ("PD_RELAY_REDIS_PORT", "RELAY_KEYS_FILE", "RELAY_PD_URL")}
        queried = run(project, shell, "relay", "status", "--json")
        assert queried.returncode == 0, queried.stdout + queried.stderr
        assert len(json.loads(queried.stdout)["keys"]) == len(keys)

        url = f"http://127.0.0.1:{port}/v2/enqueue"
        for n in range(10):
            reply = requests.post(url, json=trigger(f"e{n}", dedup_key=f"s{n}"), timeout=10)
            assert reply.status_code == 202, reply.text
            assert reply.headers.get("X-Request-ID")

        def delivered() -> set[str]:
            events = requests.get(sim + "/_sim/events", timeout=5).json()["events"]
            return {e["dedup_key"] for e in events if e["status"] == 202}

        wait_until(lambda: len(delivered()) == 10, 30, "delivery through nginx")

        before = pids(run(project, env, "status").stdout)
        assert {"redis", "nginx", "ingress-0", "ingress-1", "worker-0", "worker-1"} <= set(before)
        os.kill(before["worker-0"], signal.SIGKILL)
        for n in range(10, 20):
            requests.post(url, json=trigger(f"e{n}", dedup_key=f"s{n}"), timeout=10)
        after = wait_until(lambda: (p := pids(run(project, env, "status").stdout)).get(
            "worker-0", before["worker-0"]) != before["worker-0"] and p, 30, "a restart")
        wait_until(lambda: len(delivered()) == 20, 30, "delivery after the restart")
        log = (project / "run" / "logs" / "supervisord.log").read_text()
        assert "exited: worker-0 (terminated by SIGKILL" in log

        # A keys-file change applied by running start.sh again: every process that reads
        # the file restarts (before, the ingress nodes went on routing with the old keys).
        keys.append(make_key())
        keys_file.write_text("\n".join(keys) + "\n")
        rerun = run(project, env)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        restarted = ("ingress-0", "ingress-1", "worker-1", "worker-2")
        now = wait_until(lambda: all(name in (p := pids(run(project, env, "status").stdout))
                                     for name in restarted) and p,
                         30, "the restarted processes to run")  # STARTING for 1 s first
        for name in ("ingress-0", "ingress-1", "worker-1"):
            assert now[name] != after[name], f"{name} still runs with the old keys"
        after.update(now)

        stopped = run(project, env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        started = False
        everything = set(before.values()) | set(after.values())
        wait_until(lambda: not any(alive(pid) for pid in everything), 10, "every process to end")
        assert "not running" in run(project, env, "status").stdout
        for name in ("ingress-0", "worker-0", "worker-1"):
            text = (project / "run" / "logs" / f"{name}.log").read_text()
            assert all(key not in text for key in keys)
    finally:
        if started:
            run(project, env, "stop", timeout=60)
        simulator.kill()
