"""Docker compose's Sentinel topology (``PD_RELAY_TOPOLOGY=sentinel``: the ``sentinel``
profile of docker-compose.yml): a primary and a replica, three Sentinels, and the relay
against the Sentinel URL; the generated override writes their commands from the same
renderers as ``pd-relay stack up --role``, checked by ``docker-compose config``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.errors import ConfigError
from relay.keys import read_keys
from relay.sentinel import parse
from relay.stack.compose import compose_env, override
from relay.stack.options import StackOptions
from tests.conftest import make_key
from tests.test_stack import compose_command

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "stack-pass-1"
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def generated(tmp_path: Path, topology: str, extra: dict[str, str] | None = None) -> dict:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{make_key()}\n")
    keys_file.chmod(0o600)
    options = StackOptions.from_env({"PD_RELAY_TOPOLOGY": topology}, tmp_path, euid=1000)
    options = StackOptions(**{**options.__dict__, "keys_file": keys_file})
    env = compose_env(dict(extra or {}, RELAY_KEYS_FILE=str(keys_file)), False, PASSWORD,
                      options.topology)
    return override(options, env, read_keys(keys_file), caller=(1000, 1000))


class ComposeScripts:
    """The override's service scripts run by sh on loopback, with this machine's
    redis-server: compose's names and ports swapped for the test's."""

    def __init__(self, tmp_path: Path, primary: int, sentinel: int,
                 replica: int | None = None) -> None:
        from relay.stack import binaries

        self.tmp_path = tmp_path
        self.swaps = [("$$", "$"), ("exec redis-server", f"exec {binaries.redis_server()}"),
                      ("mymaster redis 6379", f"mymaster 127.0.0.1 {primary}"),
                      ("announce-ip redis-replica", "announce-ip 127.0.0.1"),
                      ("announce-ip redis\n", "announce-ip 127.0.0.1\n"),
                      ("announce-ip sentinel-1", "announce-ip 127.0.0.1"),
                      ("bind 0.0.0.0", "bind 127.0.0.1"), ("port 26379", f"port {sentinel}")]
        if replica is not None:
            self.swaps.append(("replicaof redis 6379", f"replicaof 127.0.0.1 {primary}"))
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.processes: list[Any] = []

    def start(self, services: dict, name: str, port: int) -> None:
        import os

        from relay.stack.processes import Process

        script = services[name]["command"][2]
        for old, new in [*self.swaps, ("--port 6379", f"--port {port} --bind 127.0.0.1"),
                         ("/data", str(self.tmp_path / name))]:
            script = script.replace(old, new)
        (self.tmp_path / name).mkdir(exist_ok=True)
        env = dict(os.environ, **services[name]["environment"])
        self.processes.append(Process(name, ["sh", "-c", script], env, self.logs))

    def stop(self) -> None:
        for process in self.processes:
            process.kill()


def test_the_topology_is_an_option_and_single_is_unchanged(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PD_RELAY_TOPOLOGY"):
        StackOptions.from_env({"PD_RELAY_TOPOLOGY": "cluster"}, tmp_path)
    single = StackOptions.from_env({}, tmp_path)
    assert single.topology == "single" and "topology" not in single.public()
    services = generated(tmp_path, "single")["services"]
    assert not set(services) & {"redis-replica", *SENTINELS}
    assert services["ingress"]["environment"]["RELAY_REDIS_URL"] == \
        f"redis://:{PASSWORD}@redis:6379/0"
    assert "min-replicas-to-write" not in services["redis"]["command"][2]


def test_the_sentinel_topology_replicates_and_the_relay_asks_the_sentinels(
        tmp_path: Path) -> None:
    services = generated(tmp_path, "sentinel",
                         {"RELAY_SENTINEL_PASSWORD": "sentinels-own"})["services"]
    assert {"redis", "redis-replica", *SENTINELS} <= set(services)
    for name in ("ingress", "worker-1", "worker-2", "channel-worker"):
        url = services[name]["environment"]["RELAY_REDIS_URL"].replace("$$", "$")
        found = parse(url)
        assert found.hosts == tuple((s, 26379) for s in SENTINELS)
        assert (found.service, found.password) == ("mymaster", PASSWORD)
    primary, replica = services["redis"]["command"][2], services["redis-replica"]["command"][2]
    for script in (primary, replica):
        assert "requirepass $$PD_RELAY_REDIS_PASSWORD" in script
        assert "masterauth $$PD_RELAY_REDIS_PASSWORD" in script
        assert "min-replicas-to-write 1" in script and "min-replicas-max-lag 10" in script
        assert "--appendonly yes" in script
    assert "replicaof redis 6379" in replica and "replicaof" not in primary
    assert "replica-announce-ip redis-replica" in replica
    for name in SENTINELS:
        service = services[name]
        script = service["command"][2]
        assert "sentinel monitor mymaster redis 6379 2" in script
        assert "sentinel auth-pass mymaster $$PD_RELAY_REDIS_PASSWORD" in script
        assert "sentinel resolve-hostnames yes" in script
        assert f"sentinel announce-ip {name}" in script
        assert "requirepass $$PD_RELAY_SENTINEL_PASSWORD" in script
        assert "if [ -s /data/sentinel.conf ]; then" in script  # its state kept across restarts
        assert service["environment"]["PD_RELAY_SENTINEL_PASSWORD"] == "sentinels-own"
        assert service["environment"]["REDISCLI_AUTH"] == "sentinels-own"  # healthcheck
    text = yaml.safe_dump(services)
    commands = " ".join(" ".join(s.get("command", [])) for s in services.values())
    assert PASSWORD not in commands and "sentinels-own" not in commands
    assert text.count(PASSWORD) >= 1  # in environments only


def test_docker_compose_config_takes_the_sentinel_profile(tmp_path: Path) -> None:
    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here: the "
                    "override was checked above, not by compose itself")
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert all(base["services"][name]["profiles"] == ["sentinel"]
               for name in ("redis-replica", *SENTINELS))
    services = generated(tmp_path, "sentinel")["services"]
    path = tmp_path / "override.yml"
    path.write_text(yaml.safe_dump({"services": services}))

    def config(*profile: str) -> dict:  # (compose v1 lists every profile's services)
        done = subprocess.run([*compose, "-p", "pd-relay", "-f", str(ROOT / "docker-compose.yml"),
                               "-f", str(path), *profile, "config"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        return yaml.safe_load(done.stdout)["services"]

    resolved = config("--profile", "sentinel")
    for name in ("redis", "redis-replica", *SENTINELS):
        assert resolved[name]["command"] == services[name]["command"], name
        assert resolved[name]["restart"] == "unless-stopped"
        assert resolved[name]["volumes"], name  # its data, or the Sentinel's state
    url = str(resolved["ingress"]["environment"]["RELAY_REDIS_URL"])
    assert url.startswith("redis+sentinel://")
    for name in ("redis-replica", *SENTINELS):  # without the profile: not started
        assert resolved[name]["profiles"] == ["sentinel"], name
    assert "profiles" not in resolved["redis"] and "profiles" not in resolved["ingress"]


def test_the_generated_scripts_run_a_replicated_primary_and_a_sentinel(tmp_path: Path) -> None:
    """The override's scripts run by sh with this machine's redis-server (compose's names
    and ports swapped for loopback ones): the replica syncs with the password, the
    Sentinel finds both and asks clients for its own password, and a Sentinel started
    again keeps the file it rewrote."""
    import redis

    from relay.stack.processes import free_port, wait_until

    services = generated(tmp_path, "sentinel", {"RELAY_SENTINEL_PASSWORD": "own-pass"})
    services = services["services"]
    primary, replica, sentinel = (free_port() for _ in range(3))
    scripts = ComposeScripts(tmp_path, primary, sentinel, replica)

    def start(name: str, port: int) -> None:
        scripts.start(services, name, port)

    try:
        start("redis", primary)
        start("redis-replica", replica)
        start("sentinel-1", sentinel)
        copy = redis.Redis(port=replica, password=services["redis"]["environment"][
            "PD_RELAY_REDIS_PASSWORD"], socket_timeout=2)
        wait_until(lambda: copy.info("replication")["master_link_status"] == "up", 20,
                   "the replica to sync")
        watcher = redis.Redis(port=sentinel, password="own-pass", socket_timeout=2,
                              decode_responses=True)
        wait_until(lambda: watcher.execute_command("SENTINEL", "REPLICAS", "mymaster"), 20,
                   "the Sentinel to find the replica")
        assert watcher.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == \
            ["127.0.0.1", str(primary)]
        conf = tmp_path / "sentinel-1" / "sentinel.conf"
        wait_until(lambda: "known-replica" in conf.read_text(), 10, "the Sentinel's rewrite")
        scripts.processes[-1].kill()
        learned = conf.read_text()
        start("sentinel-1", sentinel)
        wait_until(lambda: watcher.ping(), 10, "the Sentinel again")
        assert "known-replica" in conf.read_text() and \
            learned.splitlines()[:3] == conf.read_text().splitlines()[:3]
    finally:
        scripts.stop()


def test_a_sentinel_password_with_a_dollar_reaches_the_sentinels_as_the_relay_has_it(
        tmp_path: Path) -> None:
    """Compose interpolates ``$`` in the override's values: the Sentinels' password must
    come through as the relay's does, or the relay cannot log in to the Sentinels."""
    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    own = "own$pass$$x"
    services = generated(tmp_path, "sentinel", {"RELAY_SENTINEL_PASSWORD": own})["services"]
    path = tmp_path / "override.yml"
    path.write_text(yaml.safe_dump({"services": services}))
    done = subprocess.run([*compose, "-p", "pd-relay", "-f", str(ROOT / "docker-compose.yml"),
                           "-f", str(path), "--profile", "sentinel", "config"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]  # (printed escaped again: $$)
    relay = resolved["ingress"]["environment"]["RELAY_SENTINEL_PASSWORD"]
    assert relay.replace("$$", "$") == own
    for name in SENTINELS:
        environment = resolved[name]["environment"]
        assert environment["PD_RELAY_SENTINEL_PASSWORD"] == relay, name
        assert environment["REDISCLI_AUTH"] == relay, name


def test_a_sentinel_password_the_sentinels_cannot_read_is_refused_with_its_name(
        tmp_path: Path) -> None:
    """A space or a quote breaks the Sentinel's file (it would fail to start, again and
    again): refused with a listed problem, as ``--role`` refuses it natively."""
    with pytest.raises(ConfigError, match="RELAY_SENTINEL_PASSWORD"):
        generated(tmp_path, "sentinel", {"RELAY_SENTINEL_PASSWORD": "two words"})
    generated(tmp_path, "single", {"RELAY_SENTINEL_PASSWORD": "two words"})  # unused there


def test_a_new_sentinel_password_reaches_a_kept_sentinel_file(tmp_path: Path) -> None:
    """RELAY_SENTINEL_PASSWORD changed: compose recreates the Sentinels with it in their
    environment, the relay asks them with it, and their kept files (their state) must
    take it too, or the relay could not log in to any Sentinel again."""
    import redis

    from relay.stack.processes import free_port, wait_until

    primary, sentinel = free_port(), free_port()
    scripts = ComposeScripts(tmp_path, primary, sentinel)
    start = scripts.start

    def asks(password: str) -> bool:
        client = redis.Redis(port=sentinel, password=password, socket_timeout=2,
                             decode_responses=True)
        try:
            return bool(client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                               "mymaster") == ["127.0.0.1", str(primary)])
        except redis.RedisError:
            return False

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = generated(tmp_path / "a", "sentinel", {"RELAY_SENTINEL_PASSWORD": "own-pass"})
    second = generated(tmp_path / "b", "sentinel", {"RELAY_SENTINEL_PASSWORD": "own-pass-new"})
    conf = tmp_path / "sentinel-1" / "sentinel.conf"
    try:
        start(first["services"], "redis", primary)
        start(first["services"], "sentinel-1", sentinel)
        wait_until(lambda: asks("own-pass"), 20, "the Sentinel with its first password")
        wait_until(lambda: "sentinel myid" in conf.read_text(), 10, "the Sentinel's rewrite")
        myid = [line for line in conf.read_text().splitlines() if "sentinel myid" in line]
        scripts.processes.pop().kill()
        start(second["services"], "sentinel-1", sentinel)
        wait_until(lambda: asks("own-pass-new"), 20, "the Sentinel with its new password")
        assert not asks("own-pass")
        assert myid[0] in conf.read_text().splitlines()  # its state kept
    finally:
        scripts.stop()
