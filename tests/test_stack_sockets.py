"""The native stack's Redis and ingress nodes on Unix sockets in its private run
directory (issue 25): no other local user can reach them, nor squat a port they left, and
a rolling restart takes a node back only when its own process answers there."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from relay.cli import _parser
from relay.errors import ConfigError
from relay.keys import read_keys
from relay.settings import Settings
from relay.stack import render
from relay.stack.model import INGRESS, WORKER, Program, relay_programs
from relay.stack.native import NativeStack
from relay.stack.options import StackOptions, ignored_options
from relay.stack.password import redis_password, stack_redis_url
from relay.stack.record import Recorded
from relay.stack.rolling import Rolling
from relay.stack.unixhttp import answers, ready_at
from tests.conftest import make_key


@pytest.fixture
def options(tmp_path: Path) -> StackOptions:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{make_key()}\n")
    return StackOptions.from_env({"RELAY_KEYS_FILE": str(keys)}, tmp_path, euid=1000)


# -- Redis ---------------------------------------------------------------------------------
def test_the_stacks_redis_listens_on_its_socket_only_and_takes_the_password(
        options: StackOptions) -> None:
    """redis-server as the native stack runs it: no TCP port, a socket for this user only,
    and the relay's URL (unix://, with the password, which its argv never shows) reaches it."""
    import redis

    from relay.stack import binaries
    from relay.stack.password import config_file
    from relay.stack.processes import Process, wait_until
    from relay.store import connect

    run = options.run_dir
    run.mkdir(mode=0o700)
    data = options.data_dir / "redis"
    data.mkdir(parents=True)
    password = redis_password(options.data_dir)
    argv = render.redis_argv(binaries.redis_server(), options.redis_port, data,
                             config=str(config_file(run, password)),
                             unixsocket=options.redis_socket)
    assert "--bind" not in argv and argv[argv.index("--port") + 1] == "0"
    assert argv[argv.index("--unixsocketperm") + 1] == "700"
    assert password not in " ".join(argv)
    url = stack_redis_url(options.data_dir, options.run_dir)
    assert url == f"unix://:{password}@{options.redis_socket}?db=0"
    server = Process("redis", argv, dict(os.environ), run)
    try:
        client = connect(Settings(redis_url=url))
        wait_until(client.ping, 10, "Redis on its socket")
        assert client.config_get("port")["port"] == "0"  # no TCP listener at all
        assert stat.S_IMODE(options.redis_socket.stat().st_mode) == 0o700
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=str(options.redis_socket)).ping()
    finally:
        server.kill()


# -- the ingress nodes ---------------------------------------------------------------------
def test_native_ingress_nodes_serve_on_sockets_in_the_run_dir(options: StackOptions) -> None:
    keys = read_keys(options.keys_file)
    sockets = options.ingress_sockets()
    assert sockets == [options.run_dir / "ingress-0.sock", options.run_dir / "ingress-1.sock"]
    programs = relay_programs(["pd-relay"], {}, keys, options.keys_file, sockets, None)
    nodes = [p for p in programs if p.role == INGRESS]
    for program, path in zip(nodes, sockets, strict=True):
        assert program.socket == path
        assert program.argv[1:] == ("ingress", "--unix-socket", str(path))
        parsed = _parser().parse_args(list(program.argv[1:]))
        assert parsed.unix_socket == str(path)
    # compose's (and the tests') nodes stay on TCP
    tcp = relay_programs([], {}, keys, options.keys_file, [8080], None, host="0.0.0.0")
    assert [p.argv for p in tcp if p.role == INGRESS] == [
        ("ingress", "--host", "0.0.0.0", "--port", "8080")]


def test_the_old_ports_are_ignored_with_a_warning() -> None:
    assert ignored_options({}) == []
    said = ignored_options({"PD_RELAY_INGRESS_PORT": "8081", "PD_RELAY_REDIS_PORT": "6390"})
    assert len(said) == 2 and all("ignored" in line for line in said)
    assert "PD_RELAY_INGRESS_PORT" in said[0] and "PD_RELAY_REDIS_PORT" in said[1]


def test_the_run_dir_is_made_private_even_when_it_was_not(options: StackOptions) -> None:
    options.run_dir.mkdir(mode=0o755)
    options.run_dir.chmod(0o755)
    NativeStack(options).prepare()
    assert stat.S_IMODE(options.run_dir.stat().st_mode) == 0o700
    assert (options.run_dir / "logs").is_dir()


def test_a_run_dir_too_deep_for_socket_paths_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys.txt").write_text(f"{make_key()}\n")
    deep = tmp_path / ("d" * 100)
    options = StackOptions.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                     "PD_RELAY_RUN_DIR": str(deep)}, tmp_path,
                                    euid=1000)
    with pytest.raises(ConfigError, match="PD_RELAY_RUN_DIR"):
        NativeStack(options).prepare()


def test_up_over_a_running_stack_of_the_previous_release_is_refused(
        options: StackOptions) -> None:
    """A running stack whose nodes and Redis listen on TCP (stack.json without
    ``sockets``) cannot be rolled onto sockets: up says to stop it first."""
    options.run_dir.mkdir()
    Recorded("native", options, {}, [], {"redis": "x", "ingress-0": "y"}).save()
    recorded = json.loads((options.run_dir / "stack.json").read_text())
    assert recorded["sockets"] is True  # what this release records
    del recorded["sockets"]  # as v0.2.0 wrote it
    (options.run_dir / "stack.json").write_text(json.dumps(recorded))
    (options.run_dir / "supervisord.pid").write_text(f"{os.getpid()}\n")  # "running"
    keys = read_keys(options.keys_file)
    with pytest.raises(ConfigError, match=r"stop it first.*Redis keeps its data"):
        NativeStack(options).up({"RELAY_REDIS_URL": "redis://127.0.0.1:6379/0"}, keys)


# -- readiness over the socket, from the node's own process --------------------------------
class Readyz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class UnixHTTPServer(HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)
        self.server_name, self.server_port = "localhost", 0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Path]:
    """An HTTP server answering /readyz 200 on a Unix socket, in this process."""
    path = tmp_path / "run" / "ingress-0.sock"
    path.parent.mkdir(exist_ok=True)
    server = UnixHTTPServer(str(path), Readyz)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def test_readiness_over_a_socket_names_the_process_that_answered(node: Path) -> None:
    assert answers(node, "/readyz") == (200, os.getpid())
    assert ready_at(node, os.getpid())
    assert not ready_at(node, os.getpid() + 1)  # someone else's process answers 200
    assert not ready_at(node, 0)  # supervisord knows no pid for the node
    assert not ready_at(node.parent / "none.sock", os.getpid())


class FakeSupervisor:
    def __init__(self, conf: Path, pid: int) -> None:
        self.conf = conf
        self.pid = pid
        self.calls: list[tuple[str, ...]] = []

    def ctl(self, *args: str, check: bool = False) -> str:
        self.calls.append(args)
        return ""

    def states(self) -> dict[str, tuple[str, int]]:
        return {"ingress-0": ("RUNNING", self.pid), "ingress-1": ("RUNNING", 1)}


class FakeNginx:
    def __init__(self) -> None:
        self.downs: list[set[str]] = []

    def write(self, down: Any = ()) -> str:
        self.downs.append(set(down))
        return "digest"


def rolling(options: StackOptions, node: Path, pid: int) -> tuple[Rolling, FakeNginx]:
    programs = [Program(f"ingress-{n}", INGRESS, ("pd-relay", "ingress", "--unix-socket",
                                                  str(node.parent / f"ingress-{n}.sock")),
                        socket=node.parent / f"ingress-{n}.sock") for n in range(2)]
    previous = Recorded("native", options, {}, [], {"ingress-0": "old",
                                                    "ingress-1": programs[1].fingerprint},
                        nginx_digest="digest")
    fake = FakeNginx()
    roll = Rolling(FakeSupervisor(options.run_dir / "supervisord.conf", pid),  # type: ignore[arg-type]
                   fake, previous, programs)  # type: ignore[arg-type]
    roll.start_wait_s = 1.0
    return roll, fake


def test_a_restarted_node_is_drained_by_its_socket_and_taken_back_from_its_own_pid(
        options: StackOptions, node: Path) -> None:
    roll, nginx = rolling(options, node, os.getpid())
    assert roll.apply("conf") == ["ingress-0"]
    assert {f"unix:{node}"} in nginx.downs  # nginx stopped sending it requests first


def test_a_node_whose_socket_another_process_answers_is_not_taken_back(
        options: StackOptions, node: Path) -> None:
    """supervisord says ingress-0 runs as pid P; whatever answers 200 on its socket is
    another process: the rolling restart waits, then fails, and never puts it back."""
    roll, nginx = rolling(options, node, os.getpid() + 1)
    with pytest.raises(AssertionError, match="ingress-0"):
        roll.apply("conf")
    assert nginx.downs == [set(), {f"unix:{node}"}]  # still drained: never taken back


def test_a_reload_signals_the_worker_processes_instead_of_restarting_them(
        options: StackOptions, node: Path) -> None:
    """``stack reload`` with a changed keys file: the worker processes (each serving every
    key) read it again on SIGHUP; the old release's worker per key is stopped."""
    workers = [Program(f"worker-{i}", WORKER, ("pd-relay", "worker", "--keys", "all",
                                                "--prefer", f"{i}/2")) for i in (1, 2)]
    previous = Recorded("native", options, {}, [], {
        "ingress-0": "x", **{p.name: p.fingerprint for p in workers}, "worker-abc": "y"})
    supervisor = FakeSupervisor(options.run_dir / "supervisord.conf", os.getpid())
    roll = Rolling(supervisor, FakeNginx(), previous, workers)  # type: ignore[arg-type]
    assert roll.apply("conf") == ["ingress-0", "worker-abc"]  # removed, none restarted
    assert ("signal", "HUP", "worker-1") in supervisor.calls
    assert ("signal", "HUP", "worker-2") in supervisor.calls
    assert not any(call[:2] == ("update", "worker-1") for call in supervisor.calls)
