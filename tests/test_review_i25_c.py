"""Review (c) of issue 25: the root-mode fix (root's state directory, files written
through O_EXCL|O_NOFOLLOW and a rename). What still lets the service user (whoever runs
as it: a compromised relay process) make root open, write, move or signal something it
should not, or lets another account read the stack's secrets. Each test failed on the
code it was written against (i25-review3, 1729b7c)."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from relay.stack import account, native
from relay.stack.account import ServiceUser
from relay.stack.compose import ComposeStack
from relay.stack.native import NativeStack
from relay.stack.options import StackOptions
from relay.stack.password import previous_stack_urls

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the stack's root mode)")


def service_user() -> ServiceUser:
    nobody = pwd.getpwnam("nobody")
    return ServiceUser("nobody", nobody.pw_uid, nobody.pw_gid, frozenset({nobody.pw_gid}))


def stack_options(tmp_path: Path, **more: Any) -> StackOptions:
    keys = tmp_path / "keys.txt"
    keys.write_text("k" * 32 + "\n")
    values: dict[str, Any] = {"home": tmp_path, "run_dir": tmp_path / "run",
                              "data_dir": tmp_path / "data", "keys_file": keys,
                              "user": "nobody", "system_dir": tmp_path}
    values.update(more)
    return StackOptions(**values)


def opened(fifo: Path, action: Callable[[], Any], within: float = 10.0) -> bool:
    """Whether ``action`` (run in a thread) opens the FIFO ``fifo`` for reading: a
    writer's non-blocking open succeeds only while a reader has it open. The reader is
    then given end of file, so the thread finishes."""
    def run() -> None:
        with contextlib.suppress(Exception):
            action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + within
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader (yet)
            thread.join(0.05)
            continue
        os.close(fd)
        thread.join(within)
        return True
    return False


# --- 1. stop: a pid that was free when checked ------------------------------------------

def test_stop_kills_no_process_that_took_a_listed_pid_after_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``down`` keeps every listed pid that is not alive when it checks (``_ours``
    answers True for it), waits up to 60 s, then SIGKILLs whatever lives under those
    pids, without asking ``_ours`` again. The pids come from a supervisord the service
    user runs (port >= 1024: its socket and pid file are in run/), so it lists free pids;
    any process root starts meanwhile (an sshd session, a cron job) that takes one of them
    is killed by root. Here: the pid is free at the check, then a process that is not the
    stack's (this test's own child, not the service user's) has it."""
    options = stack_options(tmp_path)
    options.run_dir.mkdir()
    options.state_dir.mkdir(exist_ok=True)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (options.state_dir / "pids").write_text(f"{victim.pid}\n")
        checks = {"n": 0}
        from relay.stack.processes import alive as real_alive

        def alive(pid: int) -> bool:
            checks["n"] += 1
            return False if checks["n"] == 1 else real_alive(pid)  # free when checked

        monkeypatch.setattr(native, "alive", alive)
        ticks = iter(range(0, 10**6, 1000))
        monkeypatch.setattr(native, "time", SimpleNamespace(
            monotonic=lambda: float(next(ticks)), sleep=lambda s: None))
        NativeStack(options).down()
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.wait(5)
        assert victim.poll() is None, "stop SIGKILLed a process that took a listed pid"
    finally:
        victim.kill()
        victim.wait(10)


# --- 2. root still opens files the service user may replace -----------------------------

def test_root_does_not_open_supervisords_pid_file_in_the_users_run_directory(
        tmp_path: Path) -> None:
    """On a port above 1023 supervisord runs as the service user and its pid file is
    run/supervisord.pid; root's ``up``, ``stop`` and ``status`` read it
    (``Supervisor.running``, ``_record_pids``) with a plain open, which follows links and
    blocks on a FIFO: the user hangs root's ./start.sh (stop included) for good, or hands
    it /dev/zero to read, or any pid it likes."""
    options = stack_options(tmp_path, port=8080)
    options.run_dir.mkdir()
    stack = NativeStack(options)
    pidfile = stack.supervisor.pidfile
    assert pidfile.parent == options.run_dir  # the user's, as account.own_dir leaves it
    os.mkfifo(pidfile)
    assert not opened(pidfile, stack.supervisor.running), \
        "root opened a FIFO the service user put in run/ (supervisord.pid)"


def test_root_does_not_open_a_redis_password_in_the_users_data_directory(
        tmp_path: Path) -> None:
    """``up`` and ``reload`` as root call ``previous_stack_urls(options.data_dir, ...)``
    (the v0.2.0 URL check): when data/redis-password exists it is read with a plain open.
    As root data/ is the service user's (0700, its own): it puts a FIFO there and every
    ./start.sh and reload hangs, or a link to /dev/zero and root reads until memory runs
    out."""
    options = stack_options(tmp_path)
    options.data_dir.mkdir()
    fifo = options.data_dir / "redis-password"
    os.mkfifo(fifo)
    assert not opened(fifo, lambda: previous_stack_urls(options.data_dir, 6379)), \
        "root opened a FIFO the service user put in data/ (redis-password)"


# --- 3. compose as root writes into the run directory a native stack gave the user -------

def test_compose_writes_nothing_through_a_link_in_the_run_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root the run directory is $PD_RELAY_SYSTEM_DIR/run in both modes; a native stack
    made it the service user's (own_dir). Switched to docker (PD_RELAY_MODE=docker, or
    auto once docker answers), root writes run/docker-compose.override.yml with
    O_CREAT|O_TRUNC (following a link the user left there: /etc/passwd is truncated and
    overwritten) and makes run/compose/ (a link to any directory: the copies of the keys
    are written and chowned there)."""
    options = stack_options(tmp_path)
    options.run_dir.mkdir()
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (options.run_dir / "docker-compose.override.yml").symlink_to(target)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (options.run_dir / "compose").symlink_to(elsewhere)
    monkeypatch.setattr("relay.stack.compose.override", lambda *a, **k: {"services": {}})
    with contextlib.suppress(OSError):  # refusing is a fix too
        ComposeStack(options).write({"RELAY_KEYS_FILE": str(options.keys_file)},
                                    SimpleNamespace())  # type: ignore[arg-type]
    assert target.read_text().startswith("root:x:0:0"), \
        "root wrote docker-compose.override.yml through a link in run/"
    assert not list(elsewhere.iterdir()), "root wrote the keys' copies through run/compose"


# --- 4. the system directory under a directory the service user owns ---------------------

@ROOT
def test_a_system_directory_the_service_user_may_swap_is_refused(tmp_path: Path) -> None:
    """``refuse_unsafe`` accepts any directory above run/ and data/ that the service user
    owns (its uid is among the "owners"), and nothing checks above the system directory.
    PD_RELAY_SYSTEM_DIR=/home/pd-relay/relay (the user's home): the user renames root's
    relay/ away and puts its own in its place after root checked it; root then reads its
    stack.json and runs ``supervisord -c state/supervisord.conf``: a configuration the
    user wrote, run as root."""
    user = service_user()
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, user.uid, user.gid)
    system = home / "relay"
    options = stack_options(tmp_path, system_dir=system, run_dir=system / "run",
                            data_dir=system / "data")
    with pytest.raises(Exception, match="PD_RELAY_SYSTEM_DIR|may swap|belongs to"):
        NativeStack(options).refuse_unsafe()


# --- 5. secrets readable by the service user's group, whoever else is in it --------------

@ROOT
def test_secrets_are_not_given_to_a_group_other_accounts_share(tmp_path: Path) -> None:
    """Root writes the keys copy, redis.conf and supervisord.conf (every RELAY_* secret)
    0640 to the service user's primary group, and the state directory 0750, without
    asking who else is in that group: PD_RELAY_USER=nobody (group nogroup, which Debian's
    _apt and sync also have), or a distribution whose useradd puts system users in
    `users` (USERGROUPS_ENAB no). Every account of that group reads the routing keys and
    the Redis password. (The relay itself would then refuse the keys, keys.granted_to_me:
    after they were exposed.)"""
    user = service_user()
    sharing = {e.pw_name for e in pwd.getpwall() if e.pw_gid == user.gid} \
        | set(grp.getgrgid(user.gid).gr_mem)
    if sharing <= {user.name}:
        pytest.skip("no other account shares nobody's group on this machine")
    options = stack_options(tmp_path)
    options.state_dir.mkdir()
    copy: Path | None = None
    with contextlib.suppress(Exception):  # refusing is a fix too
        env, _ = account.private_files(options, {"RELAY_KEYS_FILE": str(options.keys_file)},
                                       user)
        copy = Path(env["RELAY_KEYS_FILE"])
    if copy is not None:
        found = copy.stat()
        assert not (found.st_gid == user.gid and found.st_mode & 0o040), \
            f"the keys copy is readable by group {user.gid}, shared with {sorted(sharing)}"


# --- 6. the upgrade's move into the service user's data directory ------------------------

def test_upgrade_moves_no_data_through_a_link_in_the_data_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``adopt_earlier_data`` checks that data/redis does not exist, chowns the old tree
    (``give_tree``), then ``shutil.move``s it there; a link planted at data/redis in
    between (data/ is the user's when it existed before, or was named by
    PD_RELAY_DATA_DIR as one of the user's) sends it into the link's target (move's
    "into that directory"); across file systems it is a root copytree into a directory
    the user may swap. The link is planted at the moment give_tree runs."""
    home = tmp_path / "clone"
    (home / "data" / "redis").mkdir(parents=True)
    (home / "data" / "redis" / "appendonly.aof").write_text("*1\r\n$4\r\nPING\r\n")
    data = tmp_path / "data"
    data.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def give_tree(path: Path, user: ServiceUser) -> None:
        (data / "redis").symlink_to(elsewhere)

    monkeypatch.setattr(account, "give_tree", give_tree)
    with contextlib.suppress(Exception):  # refusing is a fix too
        account.adopt_earlier_data(home, tmp_path / "run", data, lambda run: False,
                                   tmp_path / "state", service_user())
    assert not (elsewhere / "redis").exists(), \
        "root moved the earlier release's data through a link in the user's data/"


# --- 7. a run directory whose parent the service user owns -------------------------------

def test_prepare_chmods_nothing_through_a_swapped_run_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``refuse_unsafe`` accepts PD_RELAY_RUN_DIR under a directory the service user owns
    (its uid is among the owners); right after that check, ``NativeStack.prepare`` runs
    ``run_dir.chmod(0o700)`` (Path.chmod follows links) and makes and chowns run/logs by
    path. The user swaps run/ for a link after the check: root chmods the link's target
    (/etc, /usr) 0700. Simulated: the link is planted as the check returns."""
    options = stack_options(tmp_path)
    victim = tmp_path / "usr"
    victim.mkdir()
    victim.chmod(0o755)
    stack = NativeStack(options)

    def check_then_swap() -> None:
        options.run_dir.symlink_to(victim)

    monkeypatch.setattr(stack, "refuse_unsafe", check_then_swap)
    with contextlib.suppress(Exception):  # refusing is a fix too
        stack.prepare()
    assert victim.stat().st_mode & 0o777 == 0o755, "root chmodded a run/ link's target"


def test_a_fifo_is_never_opened_not_even_for_an_instant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``read_small`` opened a FIFO without blocking and then refused it: safe, but the
    instant it held it open, the FIFO's writer (``opened`` above) saw a reader, so the two
    tests above failed now and then under load. A FIFO is now refused before any open."""
    from relay.stack import files

    fifo = tmp_path / "supervisord.pid"
    os.mkfifo(fifo)
    real_open, seen = os.open, []

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        seen.append(Path(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", spy)
    assert files.read_small(fifo) is None
    assert fifo not in seen
