"""Review of issue 25's first half (sockets in a private run dir, the Redis-link warning):
findings as failing tests. Each names what another local user (or an operator's
ordinary configuration) can do that the change promised to prevent."""

from __future__ import annotations

import json
import logging
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from relay.errors import ConfigError
from relay.settings import Settings
from relay.stack import account, render
from relay.stack.native import NativeStack
from relay.stack.options import StackOptions
from relay.stack.processes import wait_until
from relay.startup import redis_link_problems
from tests.conftest import make_key

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another "
                             "user's directory (as the relay's user, chmod would fail)")


def _options(tmp_path: Path, run_dir: Path) -> StackOptions:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{make_key()}\n")
    return StackOptions.from_env({"RELAY_KEYS_FILE": str(keys),
                                  "PD_RELAY_RUN_DIR": str(run_dir)}, tmp_path)


# -- the run directory: private at every level, or refused --------------------------------
@AS_ROOT
def test_a_run_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """Another user made the run directory first (PD_RELAY_RUN_DIR under /tmp, /run, a
    shared disk; or a symlink at run/, which StackOptions resolves to the same place).
    prepare() makes it 0700, but 0700 lets its owner in: that user can unlink
    run/ingress-0.sock or run/redis.sock and listen there (nginx hands it requests with API
    and routing keys; the ingress sends it AUTH with the Redis password) and replace
    stack.json or redis.conf. Started as root, nginx's workers even run as that user
    (render.nginx's sockets_owner is the run directory's owner)."""
    nobody = pwd.getpwnam("nobody")
    planted = tmp_path / "shared" / "run"
    planted.mkdir(parents=True)
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    options = _options(tmp_path, planted)
    with pytest.raises(ConfigError, match="run"):
        NativeStack(options).prepare()
    # what it does instead: the other user keeps the directory, with every right on it
    assert planted.stat().st_uid == nobody.pw_uid


def test_a_run_dir_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    """The run directory is 0700, but its parent lets others write (no sticky bit):
    another user renames run/ away (a rename inside one parent needs no right on the
    directory itself) and makes their own run/ with their own sockets. nginx and the
    ingress reach the sockets by path on every new connection, so the next upstream
    connection and the next Redis connection go to that user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, not sticky
    options = _options(tmp_path, shared / "run")
    try:
        with pytest.raises(ConfigError, match="run"):
            NativeStack(options).prepare()
    finally:
        shared.chmod(0o700)
    assert not (stat.S_IMODE(shared.stat().st_mode) & stat.S_ISVTX)


@AS_ROOT
def test_nginx_workers_never_run_as_root(tmp_path: Path) -> None:
    """Started as root, v0.2.0 ran nginx's workers as nobody; now they run as the owner of
    the run directory, which is root when root starts the stack (the README's quick
    start): the process that parses every request from the network runs as root. The
    issue: no relay process as root except nginx's master."""
    options = StackOptions.from_env({"PD_RELAY_PORT": "80"}, tmp_path, euid=0)
    assert options.user and options.privileged_port  # nginx's master keeps root below 1024
    user = account.ServiceUser(options.user, 999, 999)
    main = render.nginx(tmp_path / "nginx", "127.0.0.1:80", ["unix:/x/ingress-0.sock"],
                        user=user.nginx).read_text()
    user_line = next((line for line in main.splitlines() if line.startswith("user ")), "")
    assert user_line and not user_line.startswith("user root"), user_line


# -- the Redis link: its password masked, and what the warning says -----------------------
@pytest.mark.parametrize("url", [
    "redis://10.0.0.5:6379/0?password=s3cretpassword",
    "rediss://redis.example.net:6380/0?password=s3cretpassword",
    "unix:///srv/run/redis.sock?db=0&password=s3cretpassword",
])
def test_a_password_in_the_urls_query_is_masked(url: str) -> None:
    """redis-py takes the password from the query too (redis.Redis.from_url reads
    ``?password=``, and Settings accepts the URL); Settings.redis_shown only masks the
    userinfo form, so the ingress's start line ("ingress on ... Redis %s"), the workers'
    and pd-relay's printed settings log the password in full (promise 6)."""
    import redis

    assert redis.Redis.from_url(url).connection_pool.connection_kwargs["password"] \
        == "s3cretpassword"
    shown = Settings(redis_url=url).redis_shown
    assert "s3cretpassword" not in shown, shown


def test_a_password_in_the_query_is_not_taken_for_none() -> None:
    """The same URL gets "takes no password: anyone who reaches it reads and changes the
    queues" although redis-py sends one."""
    problems = redis_link_problems("rediss://redis.example.net:6380/0?password=pw")
    assert problems == [], problems


def test_tls_without_certificate_checks_is_named() -> None:
    """rediss:// with ssl_cert_reqs=none (redis-py reads it from the query) is TLS that any
    machine in the path can stand in for: it receives AUTH with the password and every
    event. The warning says nothing, as if the link were protected."""
    url = "rediss://:pw@redis.example.net:6380/0?ssl_cert_reqs=none"
    assert redis_link_problems(url), "an unchecked TLS link passed as protected"


# -- the client address behind nginx, now that the nodes are on sockets -------------------
def test_a_node_on_its_socket_still_records_the_client_nginx_saw(
        settings: Settings, fake: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """waitress on a Unix socket gives every request REMOTE_ADDR "localhost"
    (UnixWSGIServer.fix_addr); relay.http.client_address takes nginx's X-Forwarded-For only
    from "127.0.0.1" or "::1". So on the native stack every sender is logged and recorded
    in the history as "localhost": the address nginx saw is lost (and a refused or abusive
    sender can no longer be found from the relay's logs)."""
    import threading

    import waitress

    from relay.app import create_app
    from relay.commands.ingress import server_options
    from relay.stack.unixhttp import _Connection
    from tests.conftest import trigger

    path = tmp_path / "node.sock"
    server = waitress.create_server(  # type: ignore[attr-defined]
        create_app(settings, client=fake), unix_socket=str(path), unix_socket_perms="600",
        **server_options(settings))  # as `pd-relay ingress` serves it
    stop = threading.Event()

    def serve() -> None:  # closed by the thread that polls it (closing it from another
        from waitress import wasyncore  # thread while it polls raised EBADF there)

        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO):
            connection = _Connection(path, 5.0)
            connection.request("POST", "/v2/enqueue",
                               body=json.dumps(trigger(dedup_key="who")).encode(),
                               headers={"Content-Type": "application/json",
                                        "X-Forwarded-For": "127.0.0.9",
                                        "X-Routing-Key": settings.routing_keys[0]})
            reply = connection.getresponse()
            reply.read()
            connection.close()
        assert reply.status == 202

        def logged() -> list[str]:  # waitress's thread may log after the reply is sent
            return [r.getMessage() for r in caplog.records
                    if "dedup_key=who" in r.getMessage()]

        lines = wait_until(logged, 10, "the accepted event's log line")
        assert "client=127.0.0.9" in lines[0], lines
    finally:
        stop.set()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()


def test_start_names_a_plain_redis_link_where_the_operator_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """With RELAY_REDIS_URL=redis://...@another-host, ./start.sh runs `pd-relay check`
    (which logs the warning on its standard error) with its output captured, and shows it
    only when the check fails: the operator who starts the stack never sees it (only the
    nodes' log files hold it). Here `check` answers as it does for such a URL (run for
    real it would try to reach that host)."""
    import subprocess

    from relay.stack import up

    warning = ("2026-12-05T00:31:17.116Z | WARNING | check | Redis at 10.0.0.5:6379 is "
               "reached over plain TCP: events, routing keys and its password cross the "
               "network in the clear; use rediss:// (TLS)\n")

    def check(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert argv[-1] == "check"
        return subprocess.CompletedProcess(argv, 0, "configuration ok\n", warning)

    class Started:
        def __init__(self, options: StackOptions) -> None:
            pass

        def up(self, env: dict[str, str], keys: Any) -> None:
            return None

    monkeypatch.setattr(up, "NativeStack", Started)
    monkeypatch.setattr("relay.stack.up.subprocess.run", check)
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{make_key()}\n")
    environ = {"PD_RELAY_MODE": "native", "PD_RELAY_BIND": "127.0.0.1",
               "RELAY_KEYS_FILE": str(keys),
               "RELAY_REDIS_URL": "redis://:s3cretpassword@10.0.0.5:6379/0"}
    options = StackOptions.from_env(environ, tmp_path, euid=1000)
    assert up.apply(options, environ, None) == 0
    out, err = capfd.readouterr()
    assert "plain TCP" in out + err, out + err
    assert "s3cretpassword" not in out + err


def test_a_redis_url_with_a_bad_port_is_a_listed_setting_problem(tmp_path: Path) -> None:
    """Settings takes redis://host:bad/0; the new warning then reads its port at start
    (ingress, workers, `pd-relay check`) and raises ValueError: a traceback instead of the
    listed "RELAY_REDIS_URL=...: ..." problem (check passed such a URL before)."""
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{make_key()}\n")
    url = "redis://:s3cretpassword@10.0.0.5:bad/0"
    try:
        settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys), "RELAY_REDIS_URL": url})
    except ConfigError as exc:
        assert "RELAY_REDIS_URL" in str(exc) and "s3cretpassword" not in str(exc)
        return
    redis_link_problems(settings.redis_url)  # at least no traceback at start
