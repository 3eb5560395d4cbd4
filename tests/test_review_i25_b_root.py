"""Review (b) of issue 25: dashboard sessions and CSRF, who may look, the unprivileged
stack (what root later reads, writes, chowns or kills in the service user's run
directory). Each test failed on the code it was written against (i25-review2); since,
root keeps what it writes and reads back in a state directory of its own."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from relay.stack import account, command, native
from relay.stack.account import ServiceUser
from relay.stack.files import own_directory
from relay.stack.native import NativeStack
from relay.stack.options import StackOptions
from relay.stack.password import config_file

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the stack's root mode)")


# --- 3. the unprivileged stack: what root does in the service user's run directory ------
# Started as root, run/ (and data/) belong to the service user: whoever runs as it (a
# compromised relay process) may put anything there, links included, between two of
# root's commands (./start.sh, reload, stop, status, relay, a reboot's start).

def service_user() -> ServiceUser:
    nobody = pwd.getpwnam("nobody")
    return ServiceUser("nobody", nobody.pw_uid, nobody.pw_gid, frozenset({nobody.pw_gid}))


def root_file(path: Path, text: str = "root:x:0:0:root:/root:/bin/bash\n") -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


def stack_options(tmp_path: Path, **more: Any) -> StackOptions:
    keys = tmp_path / "keys.txt"
    keys.write_text("k" * 32 + "\n")
    return StackOptions(home=tmp_path, run_dir=tmp_path / "run", data_dir=tmp_path / "data",
                        keys_file=keys, user="nobody", system_dir=tmp_path, **more)


@ROOT
def test_own_dir_does_not_chown_what_a_link_in_run_points_at(tmp_path: Path) -> None:
    """``own_dir`` runs at every start and reload as root; os.walk lists a link and
    os.chown follows it: a link run/redis.conf -> /etc/passwd (or /etc, /root/.ssh)
    gives the file to the service user, who then writes a uid-0 line: root."""
    passwd = root_file(tmp_path / "passwd")
    etc = tmp_path / "etc"
    etc.mkdir()
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "redis.conf").symlink_to(passwd)
    (run / "logs" / "nginx.log").symlink_to(etc)
    account.own_dir(run, service_user())
    assert passwd.stat().st_uid == 0, "root chowned a file outside run/ to the service user"
    assert etc.stat().st_uid == 0, "root chowned a directory outside run/ to the service user"


@ROOT
def test_private_copies_do_not_follow_a_planted_private_link(tmp_path: Path) -> None:
    """run/private -> a root directory: ``private_copy`` chowns that directory to the
    service user (os.chown follows) and writes the keys file into it."""
    etc = tmp_path / "etc"
    etc.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "private").symlink_to(etc)
    source = root_file(tmp_path / "keys.txt", "k" * 32 + "\n")
    with contextlib.suppress(Exception):  # refusing is a fix too
        account.private_copy(source, run, "keys.txt", service_user().gid)
    assert etc.stat().st_uid == 0, "root gave a directory outside run/ to the service user"
    assert not (etc / "keys.txt").exists(), "root wrote the keys outside run/"


@ROOT
def test_root_writes_no_file_of_the_run_directory_through_a_planted_link(
        tmp_path: Path) -> None:
    """Root (re)writes run/redis.conf (touch, chmod 600, write), run/supervisord.conf
    (O_TRUNC) and run/pids (write_text) at every start or reload, all following links:
    run/redis.conf -> /etc/passwd empties every account and makes it 0600."""
    options = stack_options(tmp_path)
    run = options.run_dir
    run.mkdir()
    targets = {name: root_file(tmp_path / f"target-{name}") for name in
               ("redis.conf", "supervisord.conf", "pids")}
    for name, target in targets.items():
        (run / name).symlink_to(target)
    stack = NativeStack(options)
    stack.supervisor = SimpleNamespace(  # type: ignore[assignment]
        states=lambda: {"ingress-0": ("RUNNING", 4242)}, pidfile=tmp_path / "sd.pid",
        conf=run / "supervisord.conf")
    (tmp_path / "sd.pid").write_text("4243\n")
    for write in (lambda: config_file(run, "the-redis-password"),
                  lambda: stack._write("[supervisord]\n"), stack._record_pids):
        with contextlib.suppress(OSError):  # refusing is a fix too
            write()
    for name, target in targets.items():
        assert target.read_text().startswith("root:x:0:0"), f"run/{name}: root wrote through"
        assert target.stat().st_mode & 0o777 == 0o644, f"run/{name}: root chmodded through"


def test_stop_kills_no_process_the_stack_did_not_start(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``down`` SIGKILLs every pid listed in run/pids, a file in the service user's
    directory: it writes the pid of sshd (or of any root process) there, kills
    supervisord (its own process), and the operator's next ./start.sh stop kills sshd."""
    options = stack_options(tmp_path)
    options.run_dir.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        options.state_dir.mkdir()
        (options.state_dir / "pids").write_text(f"{victim.pid}\n")
        ticks = iter(range(0, 10**6, 1000))
        monkeypatch.setattr(native, "time", SimpleNamespace(
            monotonic=lambda: float(next(ticks)), sleep=lambda s: None))
        NativeStack(options).down()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a SIGKILL lands at once
            victim.wait(5)
        assert victim.poll() is None, "./start.sh stop killed a process not of the stack"
    finally:
        victim.kill()
        victim.wait(10)


def planted_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """A stack.json as root's stack writes it, then changed by the service user (it owns
    run/: it may replace any file there)."""
    from relay.stack.record import Recorded

    options = stack_options(tmp_path)
    options.run_dir.mkdir()
    options.state_dir.mkdir()
    Recorded("native", options, {"RELAY_KEYS_FILE": str(options.keys_file)}).save()
    path = options.state_dir / "stack.json"  # root's now: changed here as if it could be
    data = json.loads(path.read_text())
    for where, values in changes.items():
        data[where].update(values)
    path.write_text(json.dumps(data))
    monkeypatch.setenv("PD_RELAY_HOME", str(tmp_path))
    monkeypatch.setenv("PD_RELAY_RUN_DIR", str(options.run_dir))
    monkeypatch.setenv("PD_RELAY_DATA_DIR", str(options.data_dir))
    monkeypatch.setenv("PD_RELAY_SYSTEM_DIR", str(tmp_path))


def test_relay_and_status_as_root_take_no_environment_from_stack_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``./start.sh relay ARGS`` and ``./start.sh status`` run pd-relay with
    ``with_settings(recorded.relay_env)``: every name in stack.json's relay_env, not only
    the relay's settings. The service user adds PYTHONPATH (or LD_PRELOAD) there, and
    the operator's next ./start.sh status runs its code as root."""
    planted = str(tmp_path / "run" / "evil")
    planted_record(tmp_path, monkeypatch, relay_env={"PYTHONPATH": planted,
                                                     "LD_PRELOAD": planted + ".so"})
    ran: list[dict[str, str]] = []

    def run(argv: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        ran.append(dict(env or {}))
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(subprocess, "run", run)
    command.main(["relay", "status"])
    for env in ran:
        assert env.get("PYTHONPATH") != planted and env.get("LD_PRELOAD") != planted + ".so", \
            "root ran pd-relay with an environment the service user wrote"


def may_write(path: Path, user: ServiceUser) -> bool:
    st = path.stat()
    if st.st_uid == user.uid:
        return bool(st.st_mode & 0o200)
    if st.st_gid in user.groups:
        return bool(st.st_mode & 0o020)
    return bool(st.st_mode & 0o002)


@ROOT
@pytest.mark.parametrize("port", [8080, 443])
def test_root_reads_no_configuration_the_service_user_may_replace(tmp_path: Path,
                                                                  port: int) -> None:
    """Root reads its configuration from run/, a directory the service user owns after
    ``up`` (own_dir): ``supervisord -c run/supervisord.conf`` as root at every start (it
    drops to ``user=`` only after reading it), ``nginx -t`` as root at every start and
    reload (run/nginx/nginx.conf may ``load_module`` a library: dlopen'd as root), and
    on port 80/443 supervisord and nginx's master stay root and read them again at every
    ``reread``/``update`` and nginx reload. Root writes each file just before it is read,
    but through links and FIFOs (write_text, O_TRUNC): a FIFO lets the service user take
    root's text and hand the reader its own, no race to win."""
    options = stack_options(tmp_path, port=port)
    user = service_user()
    stack = NativeStack(options)
    options.run_dir.mkdir()
    account.own_dir(options.run_dir, user)  # as ``up`` leaves the run directory
    own_directory(options.state_dir, 0o750, user.gid)  # as ``up`` makes root's
    nginx = options.state_dir / "nginx"
    nginx.mkdir()
    # what root reads back (stack.json: the user and directories `reload` applies, the
    # pids `stop` signals), and what supervisord and nginx read as root
    read_by_root = [stack.supervisor.conf, nginx / "nginx.conf", nginx / "pd-relay.conf",
                    options.state_dir / "stack.json", options.state_dir / "pids"]
    if options.privileged_port:  # supervisord and nginx's master keep root: their files
        own_directory(options.state_dir / "logs")  # as ``up`` makes it then
        read_by_root += [stack.supervisor.pidfile, options.supervisor_dir / "logs" / "x"]
    for path in read_by_root:
        assert not may_write(path.parent, user), \
            f"{path}: read by root, in a directory the service user may write"
