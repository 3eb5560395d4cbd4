"""End to end: ./start.sh in native mode, in a temporary copy of the project, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from relay.settings import Settings
from relay.stack.processes import Process, alive, free_port, pd_relay, wait_until
from tests.conftest import make_key, trigger
from tests.receivers import WebhookReceiver

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


def squat(port: int) -> socket.socket:
    """A listener on 127.0.0.1:``port``, as another user would bind a port left free."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    return sock


def reached(squatters: list[socket.socket]) -> list[int]:
    """The ports of the squatters some client connected to (a listener with a connection
    waiting to be accepted is readable)."""
    readable, _, _ = select.select(squatters, [], [], 0)
    return [sock.getsockname()[1] for sock in readable]


def pids(status_text: str) -> dict[str, int]:
    found = re.finditer(r"^(\S+)\s+RUNNING\s+pid (\d+)", status_text, re.M)
    return {match[1]: int(match[2]) for match in found}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:
        copy = tmp_path / "pd-relay"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        yield copy
        return
    # as root the stack runs as an unprivileged user (tests/e2e/test_unpriv.py): run/ and
    # data/ stay in the copy, which that user must reach (pytest's directories are 0700)
    base = Path(tempfile.mkdtemp(prefix="pd-relay-start-", dir="/tmp"))
    base.chmod(0o755)
    copy = base / "pd-relay"
    shutil.copytree(ROOT, copy, ignore=IGNORE)
    monkeypatch.setenv("PD_RELAY_SYSTEM_DIR", str(base / "system"))
    monkeypatch.setenv("PD_RELAY_RUN_DIR", str(copy / "run"))
    monkeypatch.setenv("PD_RELAY_DATA_DIR", str(copy / "data"))
    yield copy
    shutil.rmtree(base, ignore_errors=True)


def state(project: Path) -> Path:
    """Where the stack keeps what it writes and reads back: as root, a directory of
    root's beside the system directory's venv (``StackOptions.state_dir``)."""
    return project.parent / "system" / "state" if os.geteuid() == 0 else project / "run"


def read_as(project: Path, path: Path, copy: str) -> str:
    """Where the processes read ``path``: as root, a private copy in root's state
    directory (the user may read it, never change it)."""
    return str(state(project) / "private" / copy) if os.geteuid() == 0 else str(path)


def test_start_without_a_keys_file_says_how_to_make_one(project: Path) -> None:
    env = dict(os.environ, PD_RELAY_MODE="native")
    result = run(project, env, timeout=60)
    assert result.returncode != 0
    assert "cannot read" in result.stderr and "--demo" in result.stderr
    assert "cp " in result.stderr and "pd_routing_keys.example.txt" in result.stderr
    assert not (project / ".venv").exists()  # refused before installing anything


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


class Load:
    """Posts events through nginx, a new connection each, until stopped; keeps every
    answer's status."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[object] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                reply = requests.post(self.url, json=trigger(f"l{n}", dedup_key=f"load-{n}"),
                                      timeout=10, headers={"Connection": "close"})
                self.statuses.append(reply.status_code)
            except requests.RequestException as exc:
                self.statuses.append(type(exc).__name__)
            self.stop.wait(0.01)

    def finish(self) -> list[object]:
        self.stop.set()
        self.thread.join(15)
        return self.statuses


# Every setting the relay reads, none at its default (RELAY_REDIS_URL: the stack's own)
SETTINGS = {
    "RELAY_RATE_PER_MIN": "6000", "RELAY_RATE_WINDOW_S": "30", "RELAY_CONNECT_TIMEOUT_S": "0.5",
    "RELAY_READ_TIMEOUT_S": "1.5", "RELAY_RETRY_BASE_S": "0.05", "RELAY_RETRY_MAX_S": "0.5",
    "RELAY_RETRY_AFTER_MAX_S": "10", "RELAY_LEASE_TTL_S": "3", "RELAY_INCIDENT_TTL_S": "3600",
    "RELAY_STORM_MODE": "always", "RELAY_STORM_AFTER_S": "5", "RELAY_STORM_AGE_S": "120",
    "RELAY_REDIS_TIMEOUT_S": "1.5", "RELAY_MAX_BODY_BYTES": "400000",
    "RELAY_PREFIX": "pdr-e2e", "RELAY_THREADS": "6", "RELAY_LOG_LEVEL": "DEBUG",
    "RELAY_LOG_FORMAT": "json", "RELAY_ALLOW_ANONYMOUS": "true",
    "RELAY_SEVERITY_MAP": "page=critical", "RELAY_QUEUE_MAX_EVENTS": "50000",
    "RELAY_QUEUE_MAX_MB": "20", "RELAY_QUEUES_MAX_MB": "40", "RELAY_OUTBOX_MAX_MB": "8",
    "RELAY_CHANNEL_RETRY_BASE_S": "0.5", "RELAY_CHANNEL_RETRY_MAX_S": "5",
    "RELAY_DEAD_LETTER_DAYS": "10", "RELAY_SELF_CHECK_S": "5", "RELAY_RETENTION_S": "60",
    "RELAY_HISTORY_DAYS": "2", "RELAY_HISTORY_MAX_ENTRIES": "10000",
    "RELAY_HISTORY_MAX_MB": "16", "RELAY_INCIDENTS_MAX": "20000",
    "RELAY_UI_OPEN_VIEW": "false", "RELAY_UI_SESSION_HOURS": "4", "RELAY_UI_IDLE_MINUTES": "20",
    "RELAY_UI_SESSIONS_MAX": "5", "RELAY_TRUSTED_PROXIES": "192.0.2.0/24",
    # the stack's readiness checks over TCP from this machine (until they use the socket)
    "RELAY_ADMIN_ALLOW": "127.0.0.1,::1",
    # issue 27's: the stack's own Redis has no replica (0 is the default with its URL);
    # a Sentinel password is read, and unused without a Sentinel URL
    "RELAY_MIN_REPLICAS": "0", "RELAY_REPLICA_TIMEOUT_MS": "800",
    "RELAY_SENTINEL_PASSWORD": "unused-without-sentinel",
}


@pytest.mark.skipif(not nginx_available(), reason="needs nginx, or root to apt-get it")
def test_start_sh_runs_the_stack_applies_changes_one_process_at_a_time_and_stops_it(
        project: Path, tmp_path: Path) -> None:
    keys = [make_key(), make_key()]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# test\n\n" + "\n".join(keys) + "\n")
    routes_file = tmp_path / "routes.yml"
    routes_file.write_text("routes:\n  - name: everything\n    keys: [key-1, key-2]\n")
    sim_port = free_port()
    simulator = Process("simulator", pd_relay() + ["simulator", "--port", str(sim_port),
                                                   "--limit", "100000"],
                        dict(os.environ), tmp_path)
    sim = f"http://127.0.0.1:{sim_port}"
    port, redis_port, ingress_port = free_port(), free_port(), free_port_pair()
    # Another local user squats the ports v0.2.0's ingress nodes and Redis listened on
    # (configured here as they were then): nothing may ever connect to them.
    squatters = [squat(p) for p in (ingress_port, ingress_port + 1, redis_port)]
    env = dict(
        os.environ, PD_RELAY_MODE="native", RELAY_KEYS_FILE=str(keys_file),
        RELAY_PD_URL=sim, PD_RELAY_PORT=str(port), PD_RELAY_BIND="127.0.0.1",
        PD_RELAY_INGRESS_PORT=str(ingress_port), PD_RELAY_REDIS_PORT=str(redis_port),
        RELAY_ROUTES_FILE=str(routes_file), **SETTINGS,
        # the load below is one client sending ~50 requests/s: above the default limit
        PD_RELAY_CLIENT_RATE="10000", PD_RELAY_CLIENT_BURST="10000",
    )
    env.pop("VIRTUAL_ENV", None)
    # (RELAY_HISTORY_DSN: the record in PostgreSQL, tests/e2e/test_start_history.py)
    assert set(SETTINGS) | {"RELAY_PD_URL", "RELAY_KEYS_FILE", "RELAY_REDIS_URL",
                            "RELAY_ROUTES_FILE", "RELAY_HISTORY_DSN"} == \
        set(Settings.env_names()), "a setting is missing from SETTINGS"
    started = False
    try:
        result = run(project, env)
        assert result.returncode == 0, result.stdout + result.stderr
        started = True
        assert f"http://127.0.0.1:{port}/v2/enqueue" in result.stdout
        assert "curl" in result.stdout
        assert "PD_RELAY_INGRESS_PORT is ignored" in result.stderr
        assert "PD_RELAY_REDIS_PORT is ignored" in result.stderr
        # what it starts, as it runs it (before: "2 worker(s)", one a key)
        assert "2 worker process(es) serving 2 key(s)" in result.stderr, result.stderr
        # what it wrote is for its user only: configurations, logs, Redis's data, and the
        # sockets Redis and the ingress nodes listen on, in a directory only it may enter
        run_dir = project / "run"
        sockets = [run_dir / name for name in ("redis.sock", "ingress-0.sock", "ingress-1.sock")]
        assert all(stat.S_ISSOCK(path.stat().st_mode) for path in sockets)
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        conf = state(project) / "supervisord.conf"
        written = [run_dir, run_dir / "logs" / "ingress-0.log", *sockets,
                   *(project / "data").rglob("*")]
        if os.geteuid() == 0:  # root's, which the service user's group may only read
            found = conf.stat()
            assert found.st_uid == 0 and not found.st_mode & 0o037, oct(found.st_mode)
        else:
            written.append(conf)
        shared = [f"{path} {path.stat().st_mode & 0o777:o}" for path in written
                  if path.stat().st_mode & 0o077]
        assert not shared, shared
        site = (state(project) / "nginx" / "pd-relay.conf").read_text()
        assert f"server unix:{sockets[1]} " in site and f":{ingress_port}" not in site

        # status and `relay` talk to the stack that was started, not to what the shell
        # they run in says (before: Redis on 6379 and ./pd_routing_keys.txt)
        shell = {k: v for k, v in env.items()
                 if k not in ("PD_RELAY_REDIS_PORT", "RELAY_KEYS_FILE", "RELAY_PD_URL")}
        queried = run(project, shell, "relay", "status", "--json")
        assert queried.returncode == 0, queried.stdout + queried.stderr
        assert len(json.loads(queried.stdout)["keys"]) == len(keys)

        # every setting reached every ingress node and worker (before: only what the
        # shell held when supervisord first started, and under compose three of them)
        before = pids(run(project, env, "status").stdout)
        workers = ["worker-1", "worker-2"]  # each serving every key
        assert {"redis", "nginx", "ingress-0", "ingress-1", "channel-worker", *workers} <= \
            set(before)
        # Redis requires the stack's password, which no command line or log shows
        secrets = state(project) if os.geteuid() == 0 else project / "data"
        password = (secrets / "redis-password").read_text().strip()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=str(sockets[0])).ping()
        expected = dict(SETTINGS, RELAY_PD_URL=sim,
                        RELAY_KEYS_FILE=read_as(project, keys_file, "keys.txt"),
                        RELAY_ROUTES_FILE=read_as(project, routes_file, "routes.yml"),
                        RELAY_REDIS_URL=f"unix://:{password}@{sockets[0]}?db=0")
        for name in ("ingress-0", "ingress-1", *workers):
            seen = environ(before[name])
            assert {k: seen.get(k) for k in expected} == expected, name
        # Redis has a maxmemory: twice the queues' cap (40), the outbox's (8), the history's
        # (16), 3 x 20,000 incidents of 420 B (25), and 64 MB
        stack_redis = redis.Redis(unix_socket_path=str(sockets[0]), password=password,
                                  decode_responses=True)
        assert stack_redis.config_get("maxmemory")["maxmemory"] == str(193 * 2**20)

        url = f"http://127.0.0.1:{port}/v2/enqueue"
        for n in range(10):
            reply = requests.post(url, json=trigger(f"e{n}", dedup_key=f"s{n}"), timeout=10)
            assert reply.status_code == 202, reply.text
            assert reply.headers.get("X-Request-ID")

        def delivered() -> set[str]:
            events = requests.get(sim + "/_sim/events", timeout=5).json()["events"]
            return {e["dedup_key"] for e in events if e["status"] == 202}

        wait_until(lambda: len(delivered()) == 10, 30, "delivery through nginx")
        assert not reached(squatters)
        os.kill(before[workers[0]], signal.SIGKILL)
        for n in range(10, 20):
            requests.post(url, json=trigger(f"e{n}", dedup_key=f"s{n}"), timeout=10)
        wait_until(lambda: pids(run(project, env, "status").stdout).get(
            workers[0], before[workers[0]]) != before[workers[0]], 30, "a restart")
        wait_until(lambda: len(delivered()) == 20, 30, "delivery after the restart")
        log = project / "run" / "logs" / "supervisord.log"
        assert f"exited: {workers[0]} (terminated by SIGKILL" in log.read_text()

        # A keys-file change applied by `reload` (from a shell without the settings: it
        # uses the recorded ones): the ingress nodes restart (before, re-running start.sh
        # left them routing with the old keys), the worker processes keep running and
        # serve the new key once told (SIGHUP).
        keys.append(make_key())
        keys_file.write_text("\n".join(keys) + "\n")
        after = pids(run(project, env, "status").stdout)
        bare = {k: v for k, v in env.items() if not k.startswith("RELAY_")}
        reloaded = run(project, bare, "reload")
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        now = pids(run(project, env, "status").stdout)
        assert now["ingress-0"] != after["ingress-0"] and now["ingress-1"] != after["ingress-1"]
        assert now[workers[0]] == after[workers[0]] and now[workers[1]] == after[workers[1]]
        for name in workers:
            wait_until(lambda name=name: "serving 3 key(s)" in (
                project / "run" / "logs" / f"{name}.log").read_text(), 30,
                f"{name} to serve the new key")

        # Channels in the routes file: `./start.sh` runs a channel worker (with the secret
        # the file takes from the shell), which sends each event of the route there.
        hooks = WebhookReceiver()
        routes_file.write_text("channels:\n  - {name: ops, type: slack, "
                               "url: '${PD_RELAY_SECRET_HOOK_URL}'}\n"
                               "routes:\n  - name: everything\n    keys: [key-1, key-2]\n"
                               "    channels: [ops]\n")
        env["PD_RELAY_SECRET_HOOK_URL"] = hooks.url + "/ops"
        rerun = run(project, env)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "PD_RELAY_SECRET_HOOK_URL: (unset) -> (set)" in rerun.stderr
        assert hooks.url not in rerun.stderr
        now = pids(run(project, env, "status").stdout)
        assert now["channel-worker"] != before["channel-worker"]  # restarted: a new file
        reply = requests.post(url, json=trigger("to chat", dedup_key="chat-1"), timeout=10)
        assert reply.status_code == 202
        wait_until(lambda: hooks.taken("/ops"), 30, "the channel worker's message")
        assert "to chat" in hooks.taken("/ops")[0]["text"]
        channels = run(project, env, "relay", "channels", "status")
        assert channels.returncode == 0 and "ops" in channels.stdout, channels.stderr
        hooks.close()
        wait_until(lambda: len(delivered()) == 21, 30, "the chat event's page")

        # A changed setting, a setting left out, under load through nginx: every process
        # restarts with the new settings, one at a time, and no request fails.
        offset = len(log.read_text())
        load = Load(url)
        wait_until(lambda: len(load.statuses) > 20, 30, "load before the change")
        changed = dict(env, RELAY_RATE_PER_MIN="5000")
        del changed["RELAY_THREADS"]
        rerun = run(project, changed)
        sent = len(load.statuses)
        wait_until(lambda: len(load.statuses) > sent + 20, 30, "load after the change")
        statuses = load.finish()
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "RELAY_RATE_PER_MIN: 6000 -> 5000" in rerun.stderr
        assert set(statuses) == {202}, [s for s in statuses if s != 202][:10]
        now = pids(run(project, env, "status").stdout)
        for name in ("ingress-0", "ingress-1", "channel-worker", *workers):
            seen = environ(now[name])
            assert seen["RELAY_RATE_PER_MIN"] == "5000" and "RELAY_THREADS" not in seen, name
        lines = log.read_text()[offset:]
        assert lines.index("success: ingress-0 entered RUNNING") < lines.index(
            "stopped: ingress-1"), "both ingress nodes were down at once"
        total = 21 + len(statuses)
        wait_until(lambda: len(delivered()) == total, 60, "every event under load delivered")
        # through every restart above (each ingress node, the workers), nothing reached
        # the squatted ports: nginx sent to the sockets, the relay's processes too
        assert not reached(squatters)

        stack_redis.set("pdr-e2e:kept", "across the upgrade")
        stopped = run(project, env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        started = False
        everything = set(before.values()) | set(now.values())
        wait_until(lambda: not any(alive(pid) for pid in everything), 10, "every process to end")
        assert "not running" in run(project, env, "status").stdout

        # A stack stopped under v0.2.0 (stack.json as it wrote it: Redis by TCP, no
        # sockets) starts again on sockets, with Redis's data (the same data directory)
        recorded = json.loads((state(project) / "stack.json").read_text())
        del recorded["sockets"]
        recorded["relay_env"]["RELAY_REDIS_URL"] = \
            f"redis://:{password}@127.0.0.1:{redis_port}/0"
        (state(project) / "stack.json").write_text(json.dumps(recorded))
        routes_file.write_text("routes:\n  - name: everything\n    keys: [key-1, key-2]\n")
        restarted = run(project, bare, "reload")  # with the recorded settings
        started = True
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert stack_redis.get("pdr-e2e:kept") == "across the upgrade"
        seen = environ(pids(run(project, env, "status").stdout)["ingress-0"])
        assert seen["RELAY_REDIS_URL"] == expected["RELAY_REDIS_URL"]
        assert not reached(squatters)
        stopped = run(project, env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        started = False
        for path in (project / "run" / "logs").glob("*.log"):
            text = path.read_text()
            assert all(key not in text for key in keys), path
            assert password not in text, path
    finally:
        if started:
            run(project, env, "stop", timeout=60)
        simulator.kill()
        for squatter in squatters:
            squatter.close()


@pytest.mark.skipif(not nginx_available() or not shutil.which("openssl"),
                    reason="needs nginx (or root to apt-get it) and openssl")
def test_the_demo_serves_https_only_with_its_self_signed_pair(project: Path) -> None:
    port = free_port()
    env = dict(os.environ, PD_RELAY_MODE="native", PD_RELAY_PORT=str(port),
               PD_RELAY_INGRESS_PORT=str(free_port_pair()), PD_RELAY_REDIS_PORT=str(free_port()),
               PD_RELAY_SIM_PORT=str(free_port()), PD_RELAY_INGRESS_NODES="2")
    env.pop("VIRTUAL_ENV", None)
    result = run(project, env, "--demo")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        cert = state(project) / "tls" / "demo-cert.pem"
        key = state(project) / "tls" / "demo-key.pem"
        assert key.stat().st_mode & 0o077 == 0
        url = f"https://127.0.0.1:{port}"
        assert f"--cacert {cert} -X POST {url}/v2/enqueue" in result.stdout
        reply = requests.post(url + "/v2/enqueue", json=trigger(dedup_key="tls-1"),
                              verify=str(cert), timeout=10)
        assert reply.status_code == 202, reply.text
        # the demo's pages are simulated: it lets anyone here look (RELAY_UI_OPEN_VIEW),
        # never change anything, and /metrics still wants a token
        page = requests.get(url + "/ui/", verify=str(cert), timeout=10)
        assert page.status_code == 200 and "sign-in" not in page.url, page.url
        assert requests.get(url + "/metrics", verify=str(cert), timeout=10).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):  # not a certificate we trust
            requests.get(url + "/healthz", timeout=10)
        plain = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert plain.status_code == 400 and "HTTPS only" in plain.json()["message"]
        # a stack recorded before Redis had a password: `reload` gives it one, and keeps
        # running the stack's Redis (it took a URL without one for the operator's own)
        recorded = state(project) / "stack.json"
        data = json.loads(recorded.read_text())
        redis_port = env["PD_RELAY_REDIS_PORT"]
        data["relay_env"]["RELAY_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        recorded.write_text(json.dumps(data))
        reloaded = run(project, env, "reload")
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert re.search(r"^redis\s+RUNNING", run(project, env, "status").stdout, re.M)
        tested = run(project, env, "relay", "send-test", "--timeout", "30", timeout=60)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "reached PagerDuty" in tested.stdout
    finally:
        run(project, env, "stop", timeout=60)
