"""End to end, as root (CI runs as root): ./start.sh --demo from a clone, as a root user
runs it, leaves no process of the stack running as root (supervisord included, on a port
above 1023); a demo event is delivered; the earlier release's Redis data moves to the
system directory; status and stop work as root. Skipped when not root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from relay.stack.processes import alive, free_port, wait_until
from tests.conftest import trigger
from tests.e2e.test_start import IGNORE, ROOT, free_port_pair, nginx_available, run


def debian_python() -> bool:
    python = Path("/usr/bin/python3")
    return python.exists() and subprocess.run(
        [str(python), "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]).returncode == 0


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not nginx_available() or not debian_python()
    or not shutil.which("useradd"),
    reason="runs as root only, with nginx, useradd and a Python 3.11 in /usr/bin")


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every user may pass through (pytest's own are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pd-relay-unpriv-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stack_pids(supervisord: int) -> dict[int, str]:
    """supervisord and every process under it: pid, command line."""
    from relay.stack.nginx import parents as parent_of

    parents = parent_of()
    found = {supervisord}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for pid in found if Path(f"/proc/{pid}").exists()}


def uids(pid: int) -> list[int]:
    """The real, effective, saved and filesystem uids of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(n) for n in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def test_started_as_root_no_process_of_the_stack_runs_as_root(tmp_path: Path,
                                                               base: Path) -> None:
    project = tmp_path / "pd-relay"  # a clone in root's private directory
    shutil.copytree(ROOT, project, ignore=IGNORE)
    # a root stack of the previous release kept Redis's data in the project
    earlier = project / "data" / "redis"
    earlier.mkdir(parents=True)
    (earlier / "earlier-release.marker").write_text("queued events live here")
    system = base / "system"
    port, sim_port = free_port(), free_port()
    env = dict(os.environ, PD_RELAY_MODE="native", PD_RELAY_SYSTEM_DIR=str(system),
               PD_RELAY_PORT=str(port), PD_RELAY_INGRESS_PORT=str(free_port_pair()),
               PD_RELAY_REDIS_PORT=str(free_port()), PD_RELAY_SIM_PORT=str(sim_port))
    for name in ("VIRTUAL_ENV", "PD_RELAY_RUN_DIR", "PD_RELAY_DATA_DIR", "PD_RELAY_USER",
                 "PYTHON"):
        env.pop(name, None)
    pids: dict[int, str] = {}
    try:
        result = run(project, env, "--demo")
        assert result.returncode == 0, result.stdout + result.stderr
        run_dir, data = system / "run", system / "data"
        assert f"moved Redis's data (queued events, history) from {project / 'data'} " \
            f"to {data}" in result.stderr
        assert (data / "redis" / "earlier-release.marker").exists()
        assert not earlier.exists()

        import pwd

        user = pwd.getpwnam("pd-relay")
        assert user.pw_uid != 0 and user.pw_shell == "/usr/sbin/nologin"
        for path in (run_dir, data, run_dir / "logs",
                     data / "redis" / "earlier-release.marker"):
            assert path.stat().st_uid == user.pw_uid, path
        # what root writes and reads back is root's: the user may read, never change it
        state = system / "state"
        for path in (state, state / "private" / "keys.txt", state / "supervisord.conf",
                     state / "stack.json", state / "redis-password"):
            found = path.stat()
            assert found.st_uid == 0 and not found.st_mode & 0o022, path
        assert run_dir.stat().st_mode & 0o777 == 0o700
        assert data.stat().st_mode & 0o777 == 0o700
        assert system.stat().st_mode & 0o777 == 0o755
        assert (system / "venv").stat().st_uid == 0  # root's: no process may change it

        supervisord = int((run_dir / "supervisord.pid").read_text())
        pids = stack_pids(supervisord)
        assert len(pids) >= 10, pids  # supervisord, Redis, simulator, 2 nodes, 3 workers...
        as_root = {pid: argv for pid, argv in pids.items() if 0 in uids(pid)}
        assert not as_root, as_root  # nginx's master too: the port needs no privilege
        assert any("nginx: master" in argv for argv in pids.values())
        keys = [line.split()[0] for line in (state / "demo-keys.txt").read_text().splitlines()
                if line and not line.startswith("#")]
        assert len(keys) == 3
        for argv in pids.values():
            assert not any(key in argv for key in keys), argv

        # a demo event goes through nginx to the simulator
        cert = state / "tls" / "demo-cert.pem"
        reply = requests.post(f"https://127.0.0.1:{port}/v2/enqueue",
                              json=trigger("as nobody", dedup_key="unpriv-1"),
                              verify=str(cert), timeout=10)
        assert reply.status_code == 202, reply.text

        def delivered() -> bool:
            events = requests.get(f"http://127.0.0.1:{sim_port}/_sim/events",
                                  timeout=5).json()["events"]
            return any(e["dedup_key"] == "unpriv-1" and e["status"] == 202 for e in events)

        wait_until(delivered, 30, "the demo event's delivery")

        # commands run later as root find the stack in the system directory
        bare = {k: v for k, v in env.items() if k not in ("PD_RELAY_PORT",)}
        status = run(project, bare, "status", timeout=60)
        assert status.returncode == 0 and "ingress-0" in status.stdout, status.stderr
        logs = run(project, bare, "logs", "nginx", "-n", "50", timeout=60)
        assert "unpriv-1" not in logs.stderr and "POST /v2/enqueue" in logs.stdout
    finally:
        stopped = run(project, env, "stop", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_until(lambda: not any(alive(pid) for pid in pids), 30, "every process to end")


def test_a_stack_of_the_earlier_release_still_running_is_not_left_behind(
        tmp_path: Path, base: Path) -> None:
    """Its supervisord still runs from the project's run/: the start is refused and says
    how to go on; nothing moves."""
    project = tmp_path / "pd-relay"
    shutil.copytree(ROOT, project, ignore=IGNORE)
    (project / "data" / "redis").mkdir(parents=True)
    (project / "run").mkdir()
    sleeper = subprocess.Popen(["sleep", "300"])  # stands for its supervisord
    try:
        (project / "run" / "supervisord.pid").write_text(f"{sleeper.pid}\n")
        env = dict(os.environ, PD_RELAY_MODE="native", PD_RELAY_SYSTEM_DIR=str(base / "s"),
                   PD_RELAY_PORT=str(free_port()), PD_RELAY_REDIS_PORT=str(free_port()),
                   PD_RELAY_INGRESS_PORT=str(free_port_pair()),
                   PD_RELAY_SIM_PORT=str(free_port()))
        for name in ("VIRTUAL_ENV", "PD_RELAY_RUN_DIR", "PD_RELAY_DATA_DIR", "PYTHON"):
            env.pop(name, None)
        result = run(project, env, "--demo")
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"still runs from {project / 'run'}: stop it first (./start.sh stop" \
            in result.stderr
        assert (project / "data" / "redis").is_dir()
        assert not (base / "s" / "data" / "redis").exists()
    finally:
        sleeper.kill()
        sleeper.wait(5)
        run(project, env, "stop", timeout=120)  # were it started after all
