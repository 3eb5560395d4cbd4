"""Started as root, no relay process runs as root (issue 25): the layout chosen (root or
not), the service user, what supervisord and nginx are told. Uids, the password database
and file modes are injected: these run without root."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from relay.errors import ConfigError
from relay.stack import account, nginx, render
from relay.stack.account import ServiceUser
from relay.stack.model import NGINX, Program
from relay.stack.options import StackOptions
from relay.stack.record import Recorded
from relay.stack.supervisor import render as supervisord

USER = ServiceUser("pd-relay", 990, 990, frozenset({990}))


# --- the layout: root or not ---------------------------------------------------------

def test_as_root_the_stack_keeps_run_and_data_in_the_system_directory_for_its_user(
        tmp_path: Path) -> None:
    home = tmp_path / "root-clone"
    options = StackOptions.from_env({}, home, euid=0)
    assert options.user == "pd-relay"
    assert options.system_dir == Path("/var/lib/pd-relay")
    assert (options.run_dir, options.data_dir) == (Path("/var/lib/pd-relay/run"),
                                                   Path("/var/lib/pd-relay/data"))
    assert options.keys_file == home.resolve() / "pd_routing_keys.txt"  # read by root
    named = StackOptions.from_env({"PD_RELAY_USER": "relayd", "PD_RELAY_SYSTEM_DIR":
                                   str(tmp_path / "sys"), "PD_RELAY_DATA_DIR":
                                   str(tmp_path / "elsewhere")}, home, euid=0)
    assert named.user == "relayd"
    assert named.run_dir == tmp_path / "sys" / "run"
    assert named.data_dir == tmp_path / "elsewhere"
    # recorded and read back (status, stop, logs, relay find the stack as root)
    assert StackOptions.recorded(named.public()) == named


def test_not_as_root_nothing_changes(tmp_path: Path) -> None:
    options = StackOptions.from_env({"PD_RELAY_USER": "relayd"}, tmp_path, euid=1000)
    assert (options.user, options.system_dir) == ("", None)
    assert (options.run_dir, options.data_dir) == (tmp_path / "run", tmp_path / "data")


def test_a_stack_recorded_by_the_previous_release_reads_as_run_by_its_caller(
        tmp_path: Path) -> None:
    old = StackOptions.from_env({}, tmp_path, euid=1000).public()
    del old["user"], old["system_dir"]
    assert StackOptions.recorded(old).user == ""


@pytest.mark.parametrize("name, said", [("root", "never run as root"),
                                        ("Bad Name", "is not a user name")])
def test_the_service_user_is_never_root_nor_a_bad_name(tmp_path: Path, name: str,
                                                       said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        StackOptions.from_env({"PD_RELAY_USER": name}, tmp_path, euid=0)


class Passwd:
    """A password database: ``add`` is what useradd does."""

    def __init__(self, **users: int) -> None:
        self.users = dict(users)
        self.ran: list[list[str]] = []

    def getpwnam(self, name: str) -> Any:
        if name not in self.users:
            raise KeyError(name)
        return SimpleNamespace(pw_uid=self.users[name], pw_gid=self.users[name])

    def run(self, argv: list[str], **kwargs: Any) -> Any:
        self.ran.append(argv)
        self.users[argv[-1]] = 990
        return SimpleNamespace(returncode=0, stderr="")


def test_a_missing_service_user_is_made_a_system_user_without_a_shell(tmp_path: Path) -> None:
    passwd = Passwd()
    user = account.ensure_user("pd-relay", tmp_path / "data", passwd.getpwnam, passwd.run,
                               lambda gid, name: True)  # its own group (not in /etc/group)
    assert (user.name, user.uid) == ("pd-relay", 990)
    assert passwd.ran == [["useradd", "--system", "--no-create-home", "--home-dir",
                           str(tmp_path / "data"), "--shell", "/usr/sbin/nologin",
                           "pd-relay"]]
    again = account.ensure_user("pd-relay", tmp_path, passwd.getpwnam, passwd.run,
                                lambda gid, name: True)
    assert again.uid == 990 and len(passwd.ran) == 1  # made once


def test_a_service_user_that_is_root_by_another_name_is_refused(tmp_path: Path) -> None:
    passwd = Passwd(toor=0)
    with pytest.raises(ConfigError, match="is root"):
        account.ensure_user("toor", tmp_path, passwd.getpwnam, passwd.run)


def test_a_user_that_cannot_be_made_is_said(tmp_path: Path) -> None:
    passwd = Passwd()
    failing = lambda argv, **kw: SimpleNamespace(returncode=9, stderr="useradd: no")  # noqa: E731
    with pytest.raises(ConfigError, match="cannot make this user .useradd: no"):
        account.ensure_user("pd-relay", tmp_path, passwd.getpwnam, failing)


def fake_stat(tree: dict[str, tuple[int, int, int]]) -> Any:
    def lookup(path: Path) -> Any:
        uid, gid, mode = tree.get(str(path), (0, 0, 0o755))
        return SimpleNamespace(st_uid=uid, st_gid=gid, st_mode=stat.S_IFDIR | mode)
    return lookup


def test_a_directory_the_user_cannot_reach_is_refused_with_the_one_in_the_way() -> None:
    tree = {"/root": (0, 0, 0o700), "/srv/shared": (0, 990, 0o750),
            "/srv/mine": (990, 0, 0o700), "/srv/theirs": (0, 5, 0o750)}
    wanted = {"PD_RELAY_RUN_DIR": Path("/root/pd-relay/run"),
              "PD_RELAY_DATA_DIR": Path("/srv/shared/data"),
              "A": Path("/srv/mine/data"), "B": Path("/srv/theirs/x/data"),
              "C": Path("/var/lib/pd-relay/run")}
    problems = account.reach_problems(wanted, USER, fake_stat(tree))
    assert len(problems) == 2, problems
    assert problems[0].startswith("PD_RELAY_RUN_DIR: the service user pd-relay cannot "
                                  "reach /root/pd-relay/run (/root is closed to it)")
    assert problems[1].startswith("B: ") and "(/srv/theirs is closed" in problems[1]


def test_the_run_and_data_directories_become_the_users_and_private(tmp_path: Path) -> None:
    """The directory itself only: what is in it may be the user's links (review (b) 1:
    root's recursive chown followed them)."""
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "x.log").write_text("")
    owned: list[tuple[Path, int]] = []
    account.own_dir(run, USER, lambda path, uid, gid: owned.append((Path(path), uid)))
    assert set(owned) == {(run, 990)}
    assert run.stat().st_mode & 0o777 == 0o700


def test_the_files_the_processes_read_are_private_copies_in_the_run_directory(
        tmp_path: Path) -> None:
    keys, routes = tmp_path / "keys.txt", tmp_path / "routes.yml"
    keys.write_text("k\n")
    routes.write_text("routes: []\n")
    user = account.ServiceUser("pd-relay", 990, os.getgid())  # a group this test may give
    for port, key_mode in (("8080", 0o640), ("443", 0o600)):
        options = StackOptions.from_env({"PD_RELAY_SYSTEM_DIR": str(tmp_path / "sys"),
                                         "PD_RELAY_PORT": port,
                                         "PD_RELAY_TLS_CERT": str(routes),
                                         "PD_RELAY_TLS_KEY": str(keys)}, tmp_path, euid=0)
        env, tls = account.private_files(
            options, {"RELAY_KEYS_FILE": str(keys), "RELAY_ROUTES_FILE": str(routes),
                      "RELAY_PREFIX": "p"}, user, lambda gid, name: True)
        # in root's state directory, not the user's run directory (review (b) 2)
        private = options.state_dir / "private"
        assert env == {"RELAY_KEYS_FILE": str(private / "keys.txt"),
                       "RELAY_ROUTES_FILE": str(private / "routes.yml"), "RELAY_PREFIX": "p"}
        assert tls == (private / "tls-cert.pem", private / "tls-key.pem")
        for copy, source, mode in ((private / "keys.txt", keys, 0o640),
                                   (private / "tls-key.pem", keys, key_mode),
                                   (private / "routes.yml", routes, 0o640)):
            assert copy.read_text() == source.read_text()
            found = copy.stat()
            assert (found.st_mode & 0o777, found.st_uid) == (mode, os.geteuid())
            assert found.st_gid == user.gid


# --- upgrading from a root stack that kept its data in the project ---------------------

def earlier_stack(home: Path) -> None:
    (home / "data" / "redis").mkdir(parents=True)
    (home / "data" / "redis" / "appendonly.aof").write_text("queued events")
    (home / "data" / "redis-password").write_text("old\n")
    (home / "run").mkdir()


def test_the_earlier_releases_redis_data_moves_to_the_new_data_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, data = tmp_path / "clone", tmp_path / "sys" / "data"
    earlier_stack(home)
    account.adopt_earlier_data(home, tmp_path / "sys" / "run", data, lambda run: False)
    assert (data / "redis" / "appendonly.aof").read_text() == "queued events"
    assert (data / "redis-password").read_text() == "old\n"
    assert not (home / "data" / "redis").exists()
    err = capsys.readouterr().err
    assert f"moved Redis's data and its password (queued events, history) from " \
        f"{home / 'data'} to {data}" in err
    # once moved, a later start leaves everything where it is
    (home / "data" / "redis").mkdir()
    account.adopt_earlier_data(home, tmp_path / "sys" / "run", data, lambda run: False)
    assert (home / "data" / "redis").exists()


def test_while_the_earlier_stack_runs_the_start_is_refused_and_nothing_moves(
        tmp_path: Path) -> None:
    home, data = tmp_path / "clone", tmp_path / "sys" / "data"
    earlier_stack(home)
    asked: list[Path] = []
    with pytest.raises(ConfigError, match=r"still runs from .*: stop it first \(./start.sh "
                       r"stop; its queued events are kept"):
        account.adopt_earlier_data(home, tmp_path / "sys" / "run", data,
                                   lambda run: asked.append(run) or True)
    assert asked == [home / "run"]
    assert (home / "data" / "redis" / "appendonly.aof").exists() and not data.exists()


# --- supervisord and nginx -------------------------------------------------------------

def programs() -> list[Program]:
    return [Program("redis", "redis", ("redis-server",)),
            Program("ingress-0", "ingress", ("pd-relay", "ingress"), {"RELAY_PREFIX": "p"}),
            Program("worker-abc", "worker", ("pd-relay", "worker", "--key-id", "abc")),
            Program(NGINX, NGINX, ("nginx",), {"PD_RELAY_LISTEN": "0.0.0.0:80"})]


def parsed(text: str) -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser()
    conf.read_string(text)
    return conf


def test_not_as_root_supervisord_and_every_program_run_as_the_caller(tmp_path: Path) -> None:
    conf = parsed(supervisord(programs(), tmp_path / "run", tmp_path))
    assert not [s for s in conf.sections() if conf.has_option(s, "user")]
    assert conf.get("supervisord", "directory") == str(tmp_path)


def test_on_a_port_above_1023_supervisord_itself_runs_as_the_service_user(
        tmp_path: Path) -> None:
    conf = parsed(supervisord(programs(), tmp_path / "run", tmp_path, "pd-relay", False))
    assert conf.get("supervisord", "user") == "pd-relay"  # so every program is its child
    assert [s for s in conf.sections() if conf.has_option(s, "user")] == ["supervisord"]
    assert conf.get("supervisord", "directory") == str(tmp_path / "run")


def test_on_a_port_below_1024_only_nginx_keeps_root_and_supervisord_switches_the_rest(
        tmp_path: Path) -> None:
    conf = parsed(supervisord(programs(), tmp_path / "run", tmp_path, "pd-relay", True))
    assert not conf.has_option("supervisord", "user")
    users = {s: conf.get(s, "user", fallback=None) for s in conf.sections()
             if s.startswith("program:")}
    assert users == {"program:redis": "pd-relay", "program:ingress-0": "pd-relay",
                     "program:worker-abc": "pd-relay", "program:nginx": None}
    assert conf.get("program:ingress-0", "environment") == 'RELAY_PREFIX="p"'


def test_supervisord_reads_the_user_lines(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions

    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    path = run / "supervisord.conf"
    path.write_text(supervisord(programs(), run, tmp_path, "nobody", True))
    options = ServerOptions()
    options.configfile = str(path)
    options.process_config(do_usage=False)
    uids = {group.name: group.process_configs[0].uid for group in options.process_group_configs}
    nobody = __import__("pwd").getpwnam("nobody").pw_uid
    assert uids == {"redis": nobody, "ingress-0": nobody, "worker-abc": nobody, "nginx": None}


def nginx_main(tmp_path: Path, user: str | None) -> str:
    return render.nginx(tmp_path, "127.0.0.1:80", ["127.0.0.1:8081"], user=user).read_text()


def test_nginx_workers_run_as_the_service_user_when_its_master_keeps_root(
        tmp_path: Path) -> None:
    assert "\nuser pd-relay pd-relay;\n" in nginx_main(tmp_path, "pd-relay pd-relay")
    assert "\nuser " not in nginx_main(tmp_path, "")  # its master runs as the user itself


def test_nginx_is_tested_as_it_will_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    ran: list[list[str]] = []
    kwargs_seen: list[dict[str, Any]] = []

    def run(argv: list[str], **kwargs: Any) -> Any:
        ran.append(argv)
        kwargs_seen.append(kwargs)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(nginx.subprocess, "run", run)
    for master_root in (True, False):
        site = nginx.Nginx("nginx", tmp_path, "127.0.0.1:80", ["127.0.0.1:8081"],
                           render.Limits(), user="pd-relay pd-relay", master_root=master_root,
                           test_as=None if master_root else (990, 990))
        site.write()
        main = (tmp_path / "nginx" / "nginx.conf").read_text()
        assert ("\nuser pd-relay pd-relay;\n" in main) is master_root
    # tested as it will run: its master as root, or as the user itself (root's test would
    # make its temporary directories, following links, where the user may write)
    assert "user" not in kwargs_seen[0]
    assert (kwargs_seen[1]["user"], kwargs_seen[1]["group"]) == (990, 990)


def test_the_programs_of_a_root_stack_are_not_recorded_with_their_private_copies(
        tmp_path: Path) -> None:
    """What `reload` starts from: the operator's files, copied again at each start."""
    options = StackOptions.from_env({"PD_RELAY_RUN_DIR": str(tmp_path),
                                     "PD_RELAY_SYSTEM_DIR": str(tmp_path / "sys")},
                                    tmp_path, euid=0)
    options.state_dir.mkdir(parents=True)
    Recorded("native", options, {"RELAY_KEYS_FILE": "/root/keys"}).save()
    loaded = Recorded.load(options.state_dir)  # root's, where the user cannot change it
    assert loaded is not None and loaded.options.user == "pd-relay"
    assert loaded.relay_env["RELAY_KEYS_FILE"] == "/root/keys"
    assert os.stat(options.state_dir / "stack.json").st_mode & 0o077 == 0


def test_stop_as_root_stops_the_stack_an_earlier_release_started_from_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`./start.sh stop` is what the refusal to start asks for: it must reach the stack
    that ran from ./run as root (before, the new layout looked only in the system one)."""
    import argparse

    from relay.stack import command

    home = tmp_path / "clone"
    (home / "run").mkdir(parents=True)
    earlier = StackOptions.from_env({}, home, euid=1000)  # as the previous release read it
    Recorded("native", earlier, {}).save()
    stopped: list[Path] = []

    class Stack:
        def __init__(self, options: StackOptions) -> None:
            self.options = options
            self.supervisor = SimpleNamespace(running=lambda: options.run_dir == home / "run")

        def down(self) -> int:
            stopped.append(self.options.run_dir)
            return 0

    monkeypatch.setattr(command, "NativeStack", Stack)
    monkeypatch.setattr(command.os, "geteuid", lambda: 0)
    monkeypatch.setenv("PD_RELAY_SYSTEM_DIR", str(tmp_path / "system"))
    for name in ("PD_RELAY_RUN_DIR", "PD_RELAY_DATA_DIR", "PD_RELAY_USER"):
        monkeypatch.delenv(name, raising=False)
    assert command._down(argparse.Namespace(), home) == 0
    assert stopped == [home / "run"]
    assert "earlier release started from" in capsys.readouterr().err


def test_a_running_stack_is_not_moved_across_1024_nor_to_another_user(tmp_path: Path) -> None:
    """Which processes keep root is decided when supervisord starts: a change of either
    asks for a stop first (restarting programs under the old supervisord would fail)."""
    running = StackOptions.from_env({"PD_RELAY_PORT": "8080"}, tmp_path, euid=0)
    same_side = StackOptions.from_env({"PD_RELAY_PORT": "9090"}, tmp_path, euid=0)
    assert account.switch_problems(running, same_side) == []
    low = StackOptions.from_env({"PD_RELAY_PORT": "443"}, tmp_path, euid=0)
    assert "crosses 1024" in account.switch_problems(running, low)[0]
    other = StackOptions.from_env({"PD_RELAY_USER": "relayd"}, tmp_path, euid=0)
    assert "runs as pd-relay, not relayd" in account.switch_problems(running, other)[0]
    # a stack the previous release started as root now gets a user: also a stop first
    earlier = StackOptions.from_env({}, tmp_path, euid=1000)
    assert "stop it first" in account.switch_problems(earlier, running)[0]
    assert account.switch_problems(earlier, StackOptions.from_env({}, tmp_path,
                                                                  euid=1000)) == []


def test_the_demo_keeps_its_keys_when_they_move_to_the_state_directory(tmp_path: Path) -> None:
    """Started as root, the demo's keys live in root's state directory; the keys an
    earlier layout kept in the run directory are taken over, or the demo's open incidents
    would name keys it no longer has (the ingress then refuses to start). A FIFO there is
    not waited on."""
    from relay.stack.up import demo_keys

    run, state = tmp_path / "run", tmp_path / "state"
    run.mkdir()
    os.mkfifo(run / "fifo")
    (run / "demo-keys.txt").write_text("# demo keys\nkey-one\n")
    demo_keys(state / "demo-keys.txt", [run / "fifo", run / "demo-keys.txt"])
    assert (state / "demo-keys.txt").read_text() == "# demo keys\nkey-one\n"
    fresh = tmp_path / "fresh" / "demo-keys.txt"
    demo_keys(fresh, [run / "missing.txt"])
    assert len([line for line in fresh.read_text().splitlines()
                if line and not line.startswith("#")]) == 3
