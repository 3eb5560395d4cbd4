"""Review of issue 25's first half, with a real nginx: HSTS on every answer over HTTPS."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import pytest

from relay.stack import tls
from relay.stack.processes import free_port, wait_until
from relay.stack.render import Limits, nginx, nginx_argv

NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")


@pytest.mark.skipif(not NGINX or not shutil.which("openssl"), reason="needs nginx and openssl")
def test_hsts_on_nginx_own_answers_that_set_a_header(tmp_path: Path) -> None:
    """add_header at the server level is inherited only by locations with no add_header of
    their own: /_pd_relay/429.json, 502.json and 504.json set Retry-After, so nginx's 429
    (a sender over its limit), 502 (no node) and 504 answer without
    Strict-Transport-Security (and without X-Request-ID). The change says HSTS "always"."""
    pair = tls.demo_pair(tmp_path / "tls")
    assert pair is not None and NGINX is not None
    port = free_port()
    dead = tmp_path / "no-node.sock"  # no node listens: every request is a 502
    main = nginx(tmp_path / "nginx", f"127.0.0.1:{port}", [f"unix:{dead}"], workers="1",
                 tls=pair, limits=Limits(rate=1, burst=1))
    process = subprocess.Popen(nginx_argv(NGINX, main), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(pair[0]))
    seen: dict[int, str | None] = {}
    try:
        def answer() -> bool:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
            try:
                conn.request("POST", "/v2/enqueue", body=b"{}",
                             headers={"Content-Type": "application/json"})
                reply = conn.getresponse()
                reply.read()
                seen[reply.status] = reply.getheader("Strict-Transport-Security")
            except OSError:
                return False
            finally:
                conn.close()
            return 429 in seen and 502 in seen

        wait_until(answer, 20, "a 502 and a 429 from nginx")
        assert seen == {502: "max-age=31536000", 429: "max-age=31536000"}, seen
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


# -- upgrading a real v0.2.0 stack (TCP) with events queued --------------------------------
ROOT = Path(__file__).resolve().parents[2]


def _old_release() -> str | None:
    """v0.2.0 by its tag, else by its commit (CI's clone of main has no tags)."""
    for ref in ("v0.2.0", "5a09afa3313087d60950f3fa93dc39cc6e694aa9"):
        if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "-q", "--verify",
                           f"{ref}^{{commit}}"], capture_output=True).returncode == 0:
            return ref
    return None


OLD = _old_release() or "v0.2.0"


def _old_release_available() -> bool:
    return _old_release() is not None


@pytest.mark.skipif(not NGINX or not _old_release_available(),
                    reason="needs nginx and the v0.2.0 tag")
def test_a_running_v020_stack_is_refused_then_upgraded_with_its_queued_events(
        tmp_path: Path) -> None:
    """The real previous release: v0.2.0's ./start.sh (Redis and the nodes on TCP), events
    accepted (202) while PagerDuty is unreachable, so they wait in Redis; this release's
    ./start.sh over it refuses and leaves it serving; stopped and started again by this
    release (same run and data directories), every event accepted is delivered."""
    import shutil as sh

    import requests

    from relay.stack.processes import Process, pd_relay
    from tests.conftest import make_key, trigger

    if os.geteuid() == 0:  # the new stack runs as its service user: a base it reaches
        import tempfile

        tmp_path = Path(tempfile.mkdtemp(prefix="pd-relay-upgrade-", dir="/tmp"))
        tmp_path.chmod(0o755)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    sh.copytree(ROOT, new, ignore=sh.ignore_patterns(".venv", "run", "data", ".git",
                                                     "*cache*", "*.egg-info"))
    key = make_key()
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{key}\n")
    keys_file.chmod(0o600)
    port, sim_port = free_port(), free_port()
    env = dict(os.environ, PD_RELAY_MODE="native", RELAY_KEYS_FILE=str(keys_file),
               RELAY_PD_URL=f"http://127.0.0.1:{sim_port}", PD_RELAY_PORT=str(port),
               PD_RELAY_BIND="127.0.0.1", PD_RELAY_RUN_DIR=str(tmp_path / "run"),
               PD_RELAY_DATA_DIR=str(tmp_path / "data"),
               PD_RELAY_INGRESS_PORT=str(free_port()), PD_RELAY_REDIS_PORT=str(free_port()),
               RELAY_RETRY_BASE_S="0.05", RELAY_RETRY_MAX_S="0.5",
               RELAY_CONNECT_TIMEOUT_S="0.5", RELAY_ALLOW_ANONYMOUS="true",
               PD_RELAY_SYSTEM_DIR=str(tmp_path / "system"))
    env.pop("VIRTUAL_ENV", None)
    url = f"http://127.0.0.1:{port}/v2/enqueue"

    def start(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["./start.sh", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=600)

    def send(n: int) -> None:
        reply = requests.post(url, json=trigger(f"u{n}", dedup_key=f"u{n}", routing_key=key),
                              timeout=10)
        assert reply.status_code == 202, reply.text

    running: Path | None = None
    simulator = None
    try:
        for _ in range(3):  # a port free when chosen may be an outgoing connection's by
            started = start(old)  # the time the stack binds it (the install takes a while)
            if started.returncode == 0 or "is taken" not in started.stderr:
                break
            port = free_port()
            env.update(PD_RELAY_PORT=str(port), PD_RELAY_INGRESS_PORT=str(free_port()),
                       PD_RELAY_REDIS_PORT=str(free_port()))
            url = f"http://127.0.0.1:{port}/v2/enqueue"
        assert started.returncode == 0, started.stdout + started.stderr
        running = old
        for n in range(5):
            send(n)
        refused = start(new)
        assert refused.returncode != 0 and "stop it first" in refused.stderr, \
            refused.stdout + refused.stderr
        send(5)  # the old stack still serves
        assert start(old, "stop").returncode == 0
        running = None
        simulator = Process("simulator", pd_relay() + ["simulator", "--port", str(sim_port),
                                                       "--limit", "100000"],
                            dict(os.environ), tmp_path)
        started = start(new)
        assert started.returncode == 0, started.stdout + started.stderr
        running = new
        assert (tmp_path / "run" / "redis.sock").exists()

        def delivered() -> set[str]:
            events = requests.get(f"http://127.0.0.1:{sim_port}/_sim/events",
                                  timeout=5).json()["events"]
            return {e["dedup_key"] for e in events if e["status"] == 202}

        wait_until(lambda: delivered() >= {f"u{n}" for n in range(6)}, 60,
                   "every event v0.2.0 accepted, delivered by this release")
    finally:
        if running is not None:
            start(running, "stop")
        if simulator is not None:
            simulator.kill()
        if os.geteuid() == 0:
            sh.rmtree(tmp_path, ignore_errors=True)
