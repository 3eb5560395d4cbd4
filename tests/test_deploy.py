"""The deployment files agree with the code: compose services, commands, env names, image,
and the configurations ``pd-relay stack`` writes pass every setting to every process.

No Docker engine runs here, so this is what keeps docker-compose.yml, the Dockerfile and
the nginx template from drifting away from the relay they deploy; the compose files are
also checked by ``docker compose config`` where that command exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from setuptools import find_packages

from relay.cli import _parser
from relay.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_NAMES = set(Settings.env_names())
TEMPLATE = (ROOT / "nginx/pd-relay.conf.template").read_text()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_settings_module_reads_the_documented_names() -> None:
    assert {"RELAY_REDIS_URL", "RELAY_PD_URL", "RELAY_KEYS_FILE", "RELAY_RATE_PER_MIN"} <= \
        SETTINGS_NAMES
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in SETTINGS_NAMES), "README lacks a setting"


def test_compose_services_and_commands_match_the_cli(compose: dict) -> None:
    services = compose["services"]
    assert {"redis", "ingress", "nginx", "simulator"} <= set(services)
    for name in ("ingress", "simulator"):
        _parser().parse_args(services[name]["command"])  # exits on a bad command
    assert services["ingress"]["image"] == services["simulator"]["image"] == "pd-relay:latest"
    assert "container_name" not in services["ingress"]  # it is scaled
    for service in services.values():
        assert not any("docker.sock" in str(v) for v in service.get("volumes", []))
        if "profiles" not in service:
            assert service["restart"] == "unless-stopped"


def test_compose_env_names_are_settings_the_relay_reads(compose: dict) -> None:
    env = compose["x-relay-env"]
    assert set(env) <= SETTINGS_NAMES
    assert env["RELAY_REDIS_URL"].startswith("redis://redis:")
    assert env["RELAY_KEYS_FILE"] in compose["x-keys"][0]


def test_redis_is_durable_and_never_evicts(compose: dict, tmp_path: Path) -> None:
    from relay.keys import parse_keys
    from relay.stack.compose import override
    from relay.stack.options import StackOptions, redis_memory
    from relay.stack.render import redis_argv

    assert "command" not in compose["services"]["redis"]  # one place: the override's
    (tmp_path / "pd_routing_keys.txt").write_text("")
    options = StackOptions.from_env({}, tmp_path, euid=1000)  # not root: run/, data/ here
    options = redis_memory(options, Settings(queues_max_mb=100))  # 200 + 32 + 24 + 21 + 64
    redis = override(options, {}, parse_keys([]))["services"]["redis"]
    shell, flag, script = redis["command"]
    assert (shell, flag) == ("sh", "-c")
    generated = shlex.split(script.splitlines()[0].removeprefix("exec ").split(" <<")[0])
    native = redis_argv("redis-server", 6379, Path("data"), maxmemory_mb=341)  # start.sh
    for command in (generated, native):
        for flag, value in (("--appendonly", "yes"), ("--appendfsync", "everysec"),
                            ("--maxmemory-policy", "noeviction"), ("--save", ""),
                            ("--maxmemory", "341mb")):
            assert command[command.index(flag) + 1] == value
    assert generated[:2] == ["redis-server", "-"] and "--bind" not in generated
    assert "healthcheck" in compose["services"]["redis"]


def test_compose_redis_reads_its_password_from_stdin_never_argv(tmp_path: Path) -> None:
    """The override's Redis command, run here by sh with this machine's redis-server:
    it requires the stack's password, which its command line never shows."""
    import redis as redis_py

    from relay.keys import parse_keys
    from relay.stack import binaries
    from relay.stack.compose import override
    from relay.stack.options import StackOptions
    from relay.stack.password import redis_password
    from relay.stack.processes import free_port, wait_until

    (tmp_path / "pd_routing_keys.txt").write_text("")
    options = StackOptions.from_env({}, tmp_path, euid=1000)  # not root: run/, data/ here
    service = override(options, {}, parse_keys([]))["services"]["redis"]
    password = redis_password(options.data_dir)
    assert (tmp_path / "data" / "redis-password").stat().st_mode & 0o077 == 0
    assert service["environment"]["PD_RELAY_REDIS_PASSWORD"] == password
    assert password not in " ".join(service["command"])
    port = free_port()
    script = service["command"][2].replace("$$", "$").replace(
        "exec redis-server", f"exec {binaries.redis_server()}").replace(
        "--port 6379", f"--port {port} --bind 127.0.0.1").replace("/data", str(tmp_path))
    env = dict(os.environ, **service["environment"])
    server = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: redis_py.Redis(port=port, password=password).ping(), 10, "redis")
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port).ping()
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline
    finally:
        server.kill()
        server.wait(5)


def test_the_stacks_redis_leaves_room_beside_the_queues_cap(tmp_path: Path) -> None:
    from relay.errors import ConfigError
    from relay.stack.options import StackOptions, redis_memory

    (tmp_path / "pd_routing_keys.txt").write_text("")
    derived = StackOptions.from_env({}, tmp_path)
    defaults = Settings()  # queues 256 MB, outbox 32 MB, history 24 MB, no keys
    incidents = 21  # the held ones only: 50,000 of 420 B (320 before issue 26's index)
    assert redis_memory(derived, defaults).redis_maxmemory_mb == 2 * 256 + 32 + 24 + \
        incidents + 64
    asked = StackOptions.from_env({"PD_RELAY_REDIS_MAXMEMORY_MB": "2048"}, tmp_path)
    assert redis_memory(asked, defaults).redis_maxmemory_mb == 2048
    small = StackOptions.from_env({"PD_RELAY_REDIS_MAXMEMORY_MB": "380"}, tmp_path)
    with pytest.raises(ConfigError, match="at least 445"):  # 256 × 1.25 + 32 + 24 + 21 + 48
        redis_memory(small, defaults)


def test_nginx_placeholders_are_all_provided(compose: dict, tmp_path: Path) -> None:
    from relay.stack.render import nginx

    placeholders = set(re.findall(r"\$\{(PD_RELAY_\w+)\}", TEMPLATE))
    assert placeholders == set(compose["services"]["nginx"]["environment"])
    nginx(tmp_path, "127.0.0.1:8080", ["127.0.0.1:8081"])  # as start.sh renders it
    site = (tmp_path / "pd-relay.conf").read_text()
    assert not [name for name in placeholders if "${" + name + "}" in site]
    assert "server 127.0.0.1:8081 max_fails=2" in site
    volume = compose["services"]["nginx"]["volumes"][0]
    assert volume.startswith("./nginx/pd-relay.conf.template:/etc/nginx/templates/")
    assert "client_max_body_size 512000;" in TEMPLATE  # the relay's own limit


@pytest.mark.skipif(not shutil.which("openssl") or not shutil.which(
    "nginx", path=os.environ.get("PATH", "") + ":/usr/sbin"), reason="needs openssl and nginx")
def test_tls_pairs_are_checked_and_nginx_takes_the_https_configuration(tmp_path: Path) -> None:
    from relay.errors import ConfigError
    from relay.keys import parse_keys
    from relay.stack import tls
    from relay.stack.compose import override
    from relay.stack.options import StackOptions
    from relay.stack.render import nginx, nginx_argv

    (tmp_path / "pd_routing_keys.txt").write_text("")
    with pytest.raises(ConfigError, match="go together"):
        StackOptions.from_env({"PD_RELAY_TLS_CERT": "cert.pem"}, tmp_path)
    pair = tls.demo_pair(tmp_path / "tls")
    assert pair is not None
    cert, key = pair
    assert tls.problems(cert, key) == []
    key.chmod(0o644)
    assert "chmod 600" in tls.problems(cert, key)[0]
    key.chmod(0o600)
    assert "cannot read" in tls.problems(tmp_path / "none.pem", key)[0]

    main = nginx(tmp_path / "nginx", "127.0.0.1:8443", ["127.0.0.1:8081"], tls=pair)
    site = (tmp_path / "nginx" / "pd-relay.conf").read_text()
    assert "listen 127.0.0.1:8443 ssl;" in site and f"ssl_certificate_key {key};" in site
    binary = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    assert binary is not None
    checked = subprocess.run([*nginx_argv(binary, main)[:-2], "-t", "-q"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    options = StackOptions.from_env(
        {"PD_RELAY_TLS_CERT": str(cert), "PD_RELAY_TLS_KEY": str(key)}, tmp_path, euid=1000)
    assert options.scheme == "https"
    served = override(options, {}, parse_keys([]))["services"]["nginx"]
    assert served["environment"]["PD_RELAY_LISTEN"] == "8080 ssl"
    assert "ssl_certificate /etc/nginx/tls/cert.pem;" in served["environment"]["PD_RELAY_TLS"]
    assert served["volumes"] == [f"{cert}:/etc/nginx/tls/cert.pem:ro",
                                 f"{key}:/etc/nginx/tls/key.pem:ro"]


def test_dockerfile_installs_the_packages_and_runs_the_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = set(find_packages(str(ROOT), include=include))
    inits = [init for top in ("relay", "worker", "simulator")
             for init in (ROOT / top).rglob("__init__.py")]
    on_disk = {str(init.parent.relative_to(ROOT)).replace("/", ".") for init in inits}
    assert on_disk <= installed, "a subpackage would be left out of the image"
    for package in ("relay", "worker", "simulator"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "pd-relay" in project["project"]["scripts"]
    assert 'ENTRYPOINT ["pd-relay"]' in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None
    args = yaml.safe_load(cmd[1])
    _parser().parse_args(args)
    assert f"EXPOSE {args[args.index('--port') + 1]}" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)


def test_start_sh_is_a_bootstrap_in_front_of_pd_relay_stack() -> None:
    start = (ROOT / "start.sh").read_text()
    assert len(start.splitlines()) < 80
    assert 'exec "$venv/bin/pd-relay" stack' in start
    assert "<<" not in start, "no inline programs or generated files in start.sh"


def test_send_test_goes_to_pd_relay_port_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_RELAY_PORT", "9191")
    assert _parser().parse_args(["send-test"]).url == "http://127.0.0.1:9191"
    monkeypatch.delenv("PD_RELAY_PORT")
    assert _parser().parse_args(["send-test"]).url == "http://127.0.0.1:8080"


def test_lower_rooms_never_reach_up() -> None:
    """The lane (worker/) uses only the shared core of relay/, never an ingress or
    operator module (before: worker/delivery.py imported relay/probe.py, send-test's)."""
    import ast

    shared = {"relay.errors", "relay.keys", "relay.names", "relay.scripts", "relay.settings",
              "relay.store", "relay.logs", "relay.severity", "relay.startup", "relay.limiter",
              "relay.http", "relay.history", "relay.history.cap", "relay.sentinel"}
    reached = {}
    for path in (ROOT / "worker").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("relay"):
                module = str(node.module)
                names = [f"{module}.{alias.name}" for alias in node.names]
                if module == "relay":
                    modules = names
                else:
                    modules = [module]
                reached.update({m: path.name for m in modules if m not in shared})
            elif isinstance(node, ast.Import):
                reached.update({a.name: path.name for a in node.names
                                if a.name.startswith("relay") and a.name not in shared})
    assert not reached, reached


def test_compose_trusts_the_forwarded_address_of_its_nginx_only(compose: dict) -> None:
    """The host's users reach compose's bridge addresses too: an ingress container that
    believed X-Forwarded-For from a whole private range would record any address a local
    user wrote there. Only nginx's pinned address is trusted, inside the pinned subnet."""
    import ipaddress
    import re

    def default(text: str) -> str:  # compose's ${NAME:-default}
        return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)

    trusted = default(compose["x-relay-env"]["RELAY_TRUSTED_PROXIES"]).split()
    nginx = default(compose["services"]["nginx"]["networks"]["default"]["ipv4_address"])
    subnet = default(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert trusted == [f"{nginx}/32"]
    assert ipaddress.ip_address(nginx) in ipaddress.ip_network(subnet)
