"""``pd-relay stack up --role ...``: the roles a host plays on several machines, the
configurations they are written, and those configurations run by this machine's
redis-server on loopback (a primary, a replica, a Sentinel)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import ConfigError
from relay.stack import binaries
from relay.stack.command import _parser
from relay.stack.datanode import START_FILE
from relay.stack.hosts import NODE_CONF, role_programs, sentinel_file
from relay.stack.model import REDIS, SENTINEL
from relay.stack.options import StackOptions
from relay.stack.processes import Process, free_port, wait_until
from relay.stack.roles import Roles, passwords, redis_conf, sentinel_conf

HOST = "127.0.0.1"
PASSWORD = "data-node-pass-1"
SENTINEL_PASSWORD = "sentinel-pass-2"


def options_for(tmp_path: Path, roles: Roles) -> StackOptions:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "pd_routing_keys.txt").write_text("")
    return replace(StackOptions.from_env({}, tmp_path, euid=1000), roles=roles)


def test_every_problem_with_the_roles_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Roles.parse(["redis-primary", "redis-replica", "sentinel", "cache"], primary="h1",
                    quorum=0, service="my master")
    text = str(caught.value)
    for part in ("not a role", "a host runs one Redis", "--primary 'h1'", "--monitor",
                 "--announce", "--quorum 0", "--service"):
        assert part in text, part
    assert len(caught.value.problems) == 7
    with pytest.raises(ConfigError, match="PD_RELAY_REDIS_PASSWORD is needed"):
        passwords(Roles.parse(["sentinel"], announce=HOST, monitor=f"{HOST}:6379"), {})
    with pytest.raises(ConfigError, match="no spaces"):
        passwords(Roles.parse(["redis-primary"], announce=HOST),
                  {"PD_RELAY_REDIS_PASSWORD": "a b"})


def test_a_host_running_the_relay_takes_the_data_password_from_its_url() -> None:
    """``reload`` has only the relay's recorded settings: the Sentinel URL's password is
    the data nodes' (the URL convention), so a Redis role beside the relay needs no
    PD_RELAY_REDIS_PASSWORD; given both, they must agree."""
    roles = Roles.parse(["redis-primary", "sentinel", "relay"], announce=HOST,
                        monitor=f"{HOST}:6379")
    url = f"redis+sentinel://:{PASSWORD}@{HOST}:26379/mymaster/0"
    assert passwords(roles, {"RELAY_REDIS_URL": url, "RELAY_SENTINEL_PASSWORD": "own"}) == \
        (PASSWORD, "own")
    with pytest.raises(ConfigError, match="differ"):
        passwords(roles, {"RELAY_REDIS_URL": url, "PD_RELAY_REDIS_PASSWORD": "other-pass"})
    with pytest.raises(ConfigError, match="PD_RELAY_REDIS_PASSWORD is needed"):
        passwords(roles, {"RELAY_REDIS_URL": f"redis+sentinel://{HOST}:26379/mymaster"})


def test_without_a_role_the_stack_is_the_single_host_one(tmp_path: Path) -> None:
    """No role: nothing recorded about roles, no Redis or Sentinel of a role, the relay."""
    options = options_for(tmp_path, Roles())
    assert "roles" not in options.public()
    assert StackOptions.recorded(options.public()) == options
    assert role_programs(options, {}) == [] and options.roles.relay
    args = _parser().parse_args(["up"])
    assert args.role == []


def test_roles_are_parsed_from_the_command_line_and_recorded(tmp_path: Path) -> None:
    args = _parser().parse_args(["up", "--role", "redis-replica", "--role", "sentinel",
                                 "--role", "relay", "--announce", "10.0.0.2",
                                 "--primary", "10.0.0.1:6379", "--monitor", "10.0.0.1:6379"])
    roles = Roles.parse(args.role, args.announce, args.redis_port, args.sentinel_port,
                        args.primary, args.monitor, args.quorum, args.service)
    assert roles.relay and roles.data_node and roles.quorum == 2
    options = options_for(tmp_path, roles)
    assert StackOptions.recorded(options.public()).roles == roles
    only_redis = Roles.parse(["redis-primary"], announce="10.0.0.1")
    assert not only_redis.relay


def test_a_data_node_listens_on_its_address_with_the_password_in_a_private_file(
        tmp_path: Path) -> None:
    replica = Roles.parse(["redis-replica"], announce="10.0.0.2", primary="10.0.0.1:6379")
    options = options_for(tmp_path, replica)
    env = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_MIN_REPLICAS": "1"}
    [program] = role_programs(options, env, binary="redis-server")
    argv = list(program.argv)
    assert program.role == REDIS and PASSWORD not in " ".join(argv)
    assert argv[argv.index("--bind") + 1] == "10.0.0.2"
    assert argv[argv.index("--port") + 1] == "6379"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    conf = options.state_dir / NODE_CONF
    assert argv[5] == str(conf) and conf.stat().st_mode & 0o077 == 0
    lines = conf.read_text().splitlines()
    for line in (f"requirepass {PASSWORD}", f"masterauth {PASSWORD}",
                 "min-replicas-to-write 1",
                 "min-replicas-max-lag 10", "replica-announce-ip 10.0.0.2"):
        assert line in lines
    # whose replica it is, it is told at each start (relay.stack.datanode), not in the file
    assert not any(line.startswith("replicaof") for line in lines)
    assert argv[2:4] == ["relay.stack.datanode", str(options.state_dir / START_FILE)]
    assert "replicaof 10.0.0.1 6379" in redis_conf(replica, PASSWORD, 1)  # compose's
    primary = redis_conf(Roles.parse(["redis-primary"], announce="10.0.0.1"), PASSWORD, 2)
    assert "min-replicas-to-write 2" in primary and "replicaof" not in primary


def test_a_sentinel_is_written_once_and_keeps_what_it_learned(tmp_path: Path) -> None:
    roles = Roles.parse(["sentinel"], announce="10.0.0.3", monitor="10.0.0.1:6379",
                        service="pd")
    options = options_for(tmp_path, roles)
    env = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    [program] = role_programs(options, env, binary="redis-server")
    path = sentinel_file(options)
    assert program.role == SENTINEL and program.argv == ("redis-server", str(path),
                                                         "--sentinel")
    lines = path.read_text().splitlines()
    for line in ("sentinel monitor pd 10.0.0.1 6379 2", f"sentinel auth-pass pd {PASSWORD}",
                 "sentinel announce-ip 10.0.0.3", "bind 10.0.0.3", "port 26379",
                 f"requirepass {SENTINEL_PASSWORD}",
                 f"sentinel sentinel-pass {SENTINEL_PASSWORD}"):
        assert line in lines
    assert path.stat().st_mode & 0o077 == 0
    path.write_text(path.read_text() + "sentinel current-epoch 7\n")  # as Sentinel would
    role_programs(options, dict(env, PD_RELAY_REDIS_PASSWORD="changed-pass"),
                  binary="redis-server")
    assert "sentinel current-epoch 7" in path.read_text()


def test_the_rendered_roles_replicate_are_watched_and_refuse_writes_cut_off(
        tmp_path: Path) -> None:
    """This machine's redis-server runs the files: the replica syncs from the primary
    with the password, the Sentinel (with its own password) finds the primary and the
    replica, and the primary, its only replica gone, refuses writes (NOREPLICAS) within
    min-replicas-max-lag: what keeps a primary cut off from taking 202s."""
    binary = binaries.redis_server()
    ports = [free_port() for _ in range(3)]
    env = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
           "RELAY_MIN_REPLICAS": "1"}
    hosts = [Roles.parse(["redis-primary"], announce=HOST, redis_port=ports[0]),
             Roles.parse(["redis-replica"], announce=HOST, redis_port=ports[1],
                         primary=f"{HOST}:{ports[0]}"),
             Roles.parse(["sentinel"], announce=HOST, sentinel_port=ports[2],
                         monitor=f"{HOST}:{ports[0]}", quorum=1)]
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = []
    try:
        for n, roles in enumerate(hosts):
            options = options_for(tmp_path / f"host{n}", roles)
            [program] = role_programs(options, env, binary)
            processes.append(Process(f"{program.role}-{n}", list(program.argv),
                                     dict(os.environ), logs))
        primary = redis.Redis(host=HOST, port=ports[0], password=PASSWORD, socket_timeout=2)
        replica = redis.Redis(host=HOST, port=ports[1], password=PASSWORD, socket_timeout=2)
        sentinel = redis.Redis(host=HOST, port=ports[2], password=SENTINEL_PASSWORD,
                               socket_timeout=2, decode_responses=True)
        wait_until(lambda: replica.info("replication")["master_link_status"] == "up", 20,
                   "the replica to sync")
        primary.set("pdr-roles", "1")
        wait_until(lambda: replica.get("pdr-roles") == b"1", 10, "the write to replicate")
        wait_until(lambda: sentinel.execute_command("SENTINEL", "REPLICAS", "mymaster"), 20,
                   "the Sentinel to find the replica")
        found = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        assert found == [HOST, str(ports[0])]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=HOST, port=ports[2], socket_timeout=2).ping()
        processes[1].kill()

        def refused() -> bool:
            try:
                primary.set("pdr-roles", "2")
            except redis.ResponseError as exc:
                return "NOREPLICAS" in str(exc)
            return False

        wait_until(refused, 30, "the primary to refuse writes without its replica", every=0.5)
    finally:
        for process in processes:
            process.kill()


def test_a_host_without_the_relay_runs_its_redis_and_sentinel_under_supervisord(
        tmp_path: Path) -> None:
    """``pd-relay stack up --role redis-primary --role sentinel``: supervisord starts the
    two, a second ``up`` with the same roles restarts neither (same fingerprints), one
    with a new password restarts Redis (its file changed) and not the Sentinel (its file
    is its own), ``down`` stops them."""
    from relay.stack.hosts import up_without_relay
    from relay.stack.native import NativeStack
    from relay.stack.record import Recorded

    redis_port, sentinel_port = free_port(), free_port()
    roles = Roles.parse(["redis-primary", "sentinel"], announce=HOST, redis_port=redis_port,
                        sentinel_port=sentinel_port, monitor=f"{HOST}:{redis_port}", quorum=1)
    options = options_for(tmp_path, roles)
    env = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_MIN_REPLICAS": "0"}
    stack = NativeStack(options)
    try:
        first = up_without_relay(options, env)
        assert set(first.programs) == {"redis", "sentinel"}
        sentinel = redis.Redis(host=HOST, port=sentinel_port, socket_timeout=2,
                               decode_responses=True)
        wait_until(lambda: sentinel.execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == [HOST, str(redis_port)],
            20, "the Sentinel to watch the primary")
        primary = redis.Redis(host=HOST, port=redis_port, password=PASSWORD, socket_timeout=2)
        assert primary.set("pdr-roles", "1")
        wait_until(lambda: all(state == "RUNNING" for state, _ in
                               stack.supervisor.states().values()), 20, "both RUNNING")
        pids = {name: pid for name, (_, pid) in stack.supervisor.states().items()}
        again = up_without_relay(options, env)
        assert again.programs == first.programs
        assert {name: pid for name, (_, pid) in stack.supervisor.states().items()} == pids
        recorded = Recorded.load(options.state_dir)
        assert recorded is not None and recorded.options.roles == roles
        changed = up_without_relay(options, dict(env, PD_RELAY_REDIS_PASSWORD="new-pass-1"))
        assert changed.programs["redis"] != first.programs["redis"]
        # the Sentinel logs in to Redis with that password too: restarted with it
        assert changed.programs["sentinel"] != first.programs["sentinel"]
        wait_until(lambda: all(state == "RUNNING" for state, _ in
                               stack.supervisor.states().values()), 20, "both RUNNING again")
        now = {name: pid for name, (_, pid) in stack.supervisor.states().items()}
        assert now["sentinel"] != pids["sentinel"] and now["redis"] != pids["redis"]
        assert "sentinel auth-pass mymaster new-pass-1" in \
            sentinel_file(options).read_text().splitlines()
        wait_until(lambda: redis.Redis(host=HOST, port=redis_port, password="new-pass-1",
                                       socket_timeout=2).ping(), 20, "Redis with its new password")
    finally:
        stack.down()
    assert not stack.supervisor.running()


def test_reload_on_a_host_without_the_relay_says_what_to_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.stack.command import main
    from relay.stack.record import Recorded

    monkeypatch.setenv("PD_RELAY_HOME", str(tmp_path))
    monkeypatch.setenv("PD_RELAY_SYSTEM_DIR", str(tmp_path / "system"))
    options = replace(StackOptions.from_env(os.environ, tmp_path),
                      roles=Roles.parse(["sentinel"], announce=HOST, monitor=f"{HOST}:6379"))
    options.state_dir.mkdir(parents=True)
    Recorded("native", options, {}).save()
    assert main(["reload"]) == 2
    assert "runs no relay (its roles: sentinel)" in capsys.readouterr().err


ROLE_NAMES = ["redis-primary", "redis-replica", "sentinel", "relay"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(ROLE_NAMES), max_size=5), st.sampled_from(["", HOST]),
       st.sampled_from(["", f"{HOST}:6379", "nohost"]),
       st.sampled_from(["", f"{HOST}:6379", ":6379"]), st.integers(-1, 3))
def test_roles_are_refused_with_a_reason_or_render_what_they_ask(
        roles: list[str], announce: str, primary: str, monitor: str, quorum: int) -> None:
    """Any mix of roles and options: refused with one problem per broken rule, or
    parsed into roles whose files name the host, the primary and the quorum asked for,
    and that a recorded stack reads back the same."""
    expected = sum([
        "redis-primary" in roles and "redis-replica" in roles,
        "redis-replica" in roles and not primary,
        "sentinel" in roles and not monitor,
        bool(set(roles) - {"relay"}) and not announce,
        primary == "nohost", monitor == ":6379", quorum < 1])
    try:
        parsed = Roles.parse(roles, announce, primary=primary, monitor=monitor, quorum=quorum)
    except ConfigError as exc:
        assert len(exc.problems) == expected
        return
    assert expected == 0
    assert Roles.recorded(parsed.public()) == parsed
    assert parsed.relay == (not roles or "relay" in roles)
    if parsed.data_node:
        conf = redis_conf(parsed, PASSWORD, 1)
        assert f"replica-announce-ip {announce}" in conf
        assert ("replicaof 127.0.0.1 6379" in conf) == ("redis-replica" in roles)
    if "sentinel" in roles:
        text = sentinel_conf(parsed, PASSWORD, "", "/tmp")
        assert f"sentinel monitor mymaster 127.0.0.1 6379 {quorum}" in text


def test_new_passwords_reach_a_kept_sentinel_file_and_restart_it(tmp_path: Path) -> None:
    """The hosts' passwords changed (``./start.sh --role ...`` run again with new ones):
    the Sentinel keeps what it learned, but logs in to the data nodes with the new data
    password and asks clients for its new own one. With the old ones kept it took a
    healthy primary for down (its login refused) and no failover could ever happen."""
    binary = binaries.redis_server()
    redis_port, sentinel_port = free_port(), free_port()
    first = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
             "RELAY_MIN_REPLICAS": "0"}
    second = dict(first, PD_RELAY_REDIS_PASSWORD="data-node-pass-new",
                  RELAY_SENTINEL_PASSWORD="sentinel-pass-new")
    data = options_for(tmp_path / "data", Roles.parse(["redis-primary"], announce=HOST,
                                                      redis_port=redis_port))
    watcher = options_for(tmp_path / "watcher", Roles.parse(
        ["sentinel"], announce=HOST, sentinel_port=sentinel_port,
        monitor=f"{HOST}:{redis_port}", quorum=1))
    logs = tmp_path / "logs"
    logs.mkdir()
    running: dict[str, Process] = {}

    def start(options: StackOptions, env: dict[str, str]) -> str:
        [program] = role_programs(options, env, binary)
        running[program.role] = Process(program.role, list(program.argv), dict(os.environ),
                                        logs)
        return program.fingerprint

    def monitored(password: str) -> bool:
        sentinel = redis.Redis(host=HOST, port=sentinel_port, password=password,
                               socket_timeout=2, decode_responses=True)
        try:
            found = sentinel.execute_command("SENTINEL", "MASTER", "mymaster")
        except redis.RedisError:
            return False
        return bool(found["flags"] == "master" and int(found["info-refresh"]) < 5000)

    try:
        start(data, first)
        before = start(watcher, first)
        wait_until(lambda: monitored(SENTINEL_PASSWORD), 20, "the Sentinel to watch the primary")
        wait_until(lambda: "sentinel myid" in sentinel_file(watcher).read_text(), 10,
                   "the Sentinel's rewrite")
        for process in running.values():
            process.kill()
        start(data, second)
        after = start(watcher, second)
        assert "sentinel myid" in sentinel_file(watcher).read_text()  # its state kept
        wait_until(lambda: monitored("sentinel-pass-new"), 20,
                   "the Sentinel to log in to the primary with the new password")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=HOST, port=sentinel_port, password=SENTINEL_PASSWORD,
                        socket_timeout=2).ping()
        assert after != before  # supervisord restarts it on the new passwords
    finally:
        for process in running.values():
            process.kill()
