"""What ``pd-relay stack`` writes: every ``RELAY_*`` setting reaches every relay process in
both modes, read back by supervisord's own parser and by ``docker compose config``
(or Debian's ``docker-compose config``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from relay.cli import _parser
from relay.errors import ConfigError
from relay.keys import read_keys
from relay.settings import Settings
from relay.stack.compose import compose_env, override
from relay.stack.model import EXPORTER, INGRESS, WORKER, Program, relay_programs
from relay.stack.options import StackOptions
from relay.stack.report import changed_settings
from relay.stack.supervisor import render, unfit
from tests.conftest import make_key

ROOT = Path(__file__).resolve().parents[1]

# A valid value, other than the default, for every setting the relay reads; the quotes,
# % and $ are there because supervisord and compose would otherwise interpret them.
VALUES = {
    "RELAY_REDIS_URL": "redis://:pa%25ss'w$rd@127.0.0.1:6390/2",
    "RELAY_PD_URL": "http://127.0.0.1:8999",
    "RELAY_RATE_PER_MIN": "100",
    "RELAY_RATE_WINDOW_S": "30",
    "RELAY_CONNECT_TIMEOUT_S": "1.5",
    "RELAY_READ_TIMEOUT_S": "4",
    "RELAY_RETRY_BASE_S": "0.5",
    "RELAY_RETRY_MAX_S": "30",
    "RELAY_RETRY_AFTER_MAX_S": "120",
    "RELAY_LEASE_TTL_S": "9",
    "RELAY_INCIDENT_TTL_S": "3600",
    "RELAY_STORM_MODE": "always",
    "RELAY_STORM_AFTER_S": "5", "RELAY_STORM_AGE_S": "120",
    "RELAY_REDIS_TIMEOUT_S": "1",
    "RELAY_MAX_BODY_BYTES": "256000",
    "RELAY_QUEUE_MAX_EVENTS": "5000",
    "RELAY_QUEUE_MAX_MB": "8.5",
    "RELAY_QUEUES_MAX_MB": "20",
    "RELAY_OUTBOX_MAX_MB": "8",
    "RELAY_CHANNEL_RETRY_BASE_S": "2",
    "RELAY_CHANNEL_RETRY_MAX_S": "60",
    "RELAY_DEAD_LETTER_DAYS": "7", "RELAY_SELF_CHECK_S": "10", "RELAY_RETENTION_S": "600",
    "RELAY_HISTORY_DAYS": "3", "RELAY_HISTORY_MAX_ENTRIES": "5000", "RELAY_HISTORY_MAX_MB": "8",
    "RELAY_INCIDENTS_MAX": "9000",
    "RELAY_UI_OPEN_VIEW": "true",
    "RELAY_UI_SESSION_HOURS": "8",
    "RELAY_UI_IDLE_MINUTES": "30",
    "RELAY_UI_SESSIONS_MAX": "5",
    "RELAY_TRUSTED_PROXIES": "10.0.0.0/8",
    "RELAY_ADMIN_ALLOW": "192.0.2.0/24, 127.0.0.1",
    "RELAY_PREFIX": "pdr-test",
    "RELAY_THREADS": "4",
    "RELAY_LOG_LEVEL": "DEBUG",
    "RELAY_LOG_FORMAT": "json",
    "RELAY_ALLOW_ANONYMOUS": "true",
    "RELAY_SEVERITY_MAP": "page=critical,*=warning",
    "RELAY_SENTINEL_PASSWORD": "sent%25inel'pa$s",
    "RELAY_MIN_REPLICAS": "2",
    "RELAY_REPLICA_TIMEOUT_MS": "750",
    "RELAY_HISTORY_DSN": "postgresql://pd_relay:pg%25pa'ss$w@127.0.0.1:5433/pd_relay",
}


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(f"{make_key()}\n{make_key()} drain\n")
    return path


def every_setting(keys_file: Path) -> dict[str, str]:
    routes = keys_file.parent / "routes.yml"
    routes.write_text("routes:\n  - name: all\n    keys: [key-1]\n")
    env = dict(VALUES, RELAY_KEYS_FILE=str(keys_file), RELAY_ROUTES_FILE=str(routes))
    Settings.from_env(env)  # all valid
    return env


def test_the_values_above_cover_every_setting() -> None:
    assert set(VALUES) | {"RELAY_KEYS_FILE", "RELAY_ROUTES_FILE"} == set(Settings.env_names())
    defaults = Settings()
    from relay.settings import _FROM_ENV

    for name, attr, parse in _FROM_ENV:
        if name in VALUES:
            assert parse(VALUES[name]) != getattr(defaults, attr), f"{name} is its default"


def test_supervisord_passes_every_setting_to_every_relay_process(tmp_path: Path,
                                                                  keys_file: Path) -> None:
    env = every_setting(keys_file)
    keys = read_keys(keys_file)
    programs = relay_programs(["pd-relay"], env, keys, keys_file, [8081, 8082], 8090)
    conf = tmp_path / "supervisord.conf"
    (tmp_path / "logs").mkdir()
    conf.write_text(render(programs, tmp_path, tmp_path))

    options = ServerOptions()  # supervisord's own reading of the file
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    read = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    relay = [p for p in programs if p.role in (INGRESS, WORKER, EXPORTER)]
    assert len(relay) == 5
    for program in relay:
        environment = read[program.name].environment
        assert {k: environment[k] for k in env} == env, program.name
        assert Settings.from_env(environment) == Settings.from_env(env)
        assert read[program.name].command.split()[1:] == list(program.argv[1:])
        _parser().parse_args(list(program.argv[1:]))
    workers = [p for p in programs if p.role == WORKER]  # two, each for every key
    assert [p.argv[1:] for p in workers] == [
        ("worker", "--keys", "all", "--prefer", f"{i}/2") for i in (1, 2)]
    assert all(key not in conf.read_text() for key in keys.keys)  # ids only


@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from(list("ab ;#%'\"\\,=()$\t\r\n")), max_size=12)
       | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=30))
def test_an_environment_value_reaches_supervisord_intact_or_is_refused(value: str) -> None:
    program = Program("ingress-0", INGRESS, ("pd-relay", "ingress"),
                      {"RELAY_X": value, "RELAY_Y": "1"})
    with tempfile.TemporaryDirectory() as temp:
        (Path(temp) / "logs").mkdir()
        try:
            text = render([program], Path(temp), Path(temp))
        except ConfigError:
            assert unfit(value)
            return
        assert not unfit(value)
        conf = Path(temp) / "supervisord.conf"
        conf.write_text(text)
        options = ServerOptions()
        options.configfile = str(conf)
        options.process_config(do_usage=False)
    read = options.process_group_configs[0].process_configs[0].environment
    assert read == {"RELAY_X": value, "RELAY_Y": "1"}


def test_compose_override_passes_every_setting_to_the_ingress_and_each_worker(
        tmp_path: Path, keys_file: Path) -> None:
    env = compose_env(every_setting(keys_file), demo=False, password="unused-here")
    options = StackOptions.from_env({}, tmp_path, euid=1000)
    options = StackOptions(**{**options.__dict__, "keys_file": keys_file})
    keys = read_keys(keys_file)
    services = override(options, env, keys, caller=(1000, 1000))["services"]  # not root
    assert set(services) == {"redis", "nginx", "ingress", "channel-worker", "worker-1",
                             "worker-2", "history-exporter", "history-migrate"}
    routes = env["RELAY_ROUTES_FILE"]
    env = dict(env, RELAY_ROUTES_FILE="/etc/pd-relay/pd_routes.yml")  # mounted there
    assert services["nginx"]["environment"]["PD_RELAY_ADMIN_ALLOW"].strip() == \
        "allow 127.0.0.1;\n        allow ::1;"
    relay = {name: service for name, service in services.items()
             if name not in ("redis", "nginx")}
    for name, service in relay.items():
        unescaped = {k: v.replace("$$", "$") for k, v in service["environment"].items()}
        assert {k: unescaped[k] for k in env} == env, name
        assert unescaped["RELAY_KEYS_FILE"] == "/etc/pd-relay/pd_routing_keys.txt"
        assert service["volumes"] == [f"{keys_file}:/etc/pd-relay/pd_routing_keys.txt:ro",
                                      f"{routes}:/etc/pd-relay/pd_routes.yml:ro"]
        if name != "ingress":
            _parser().parse_args(service["command"])
    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here: the "
                    "files were checked above, not by compose itself")
    generated = tmp_path / "override.yml"
    generated.write_text(yaml.safe_dump({"services": services}))
    done = subprocess.run([*compose, "-p", "pd-relay", "-f", str(ROOT / "docker-compose.yml"),
                           "-f", str(generated), "config"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    for name in relay:
        seen = {k: str(v).replace("$$", "$") for k, v in resolved[name]["environment"].items()}
        assert {k: seen[k] for k in env} == env
        assert resolved[name]["volumes"]
    assert resolved["redis"]["command"] == services["redis"]["command"]
    assert {"redis", "ingress", "nginx"} <= set(resolved)


def compose_command() -> list[str] | None:
    """Compose v2 (the docker plugin), else v1 (Debian's docker-compose): ``config`` needs
    no Docker engine."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) and subprocess.run(
                [*argv, "version"], capture_output=True).returncode == 0:
            return argv
    return None


def test_the_worker_processes_are_set_by_count_and_a_new_key_restarts_none(
        tmp_path: Path, keys_file: Path) -> None:
    options = StackOptions.from_env({"PD_RELAY_WORKER_PROCESSES": "3"}, tmp_path, euid=1000)
    assert options.workers == 3
    env = {"RELAY_KEYS_FILE": str(keys_file)}
    before = relay_programs(["pd-relay"], env, read_keys(keys_file), keys_file, [8081], None,
                            workers=options.workers)
    keys_file.write_text(keys_file.read_text() + make_key() + "\n")
    after = relay_programs(["pd-relay"], env, read_keys(keys_file), keys_file, [8081], None,
                           workers=options.workers)
    workers = {p.name: p.fingerprint for p in before if p.role == WORKER}
    assert list(workers) == ["worker-1", "worker-2", "worker-3"]
    assert workers == {p.name: p.fingerprint for p in after if p.role == WORKER}
    assert [p.argv[-1] for p in before if p.role == WORKER] == ["1/3", "2/3", "3/3"]
    one = relay_programs(["pd-relay"], env, read_keys(keys_file), keys_file, [8081], None,
                         workers=1)
    assert [p.argv[1:] for p in one if p.role == WORKER] == [("worker", "--keys", "all")]
    with pytest.raises(ConfigError, match="PD_RELAY_WORKER_PROCESSES"):
        StackOptions.from_env({"PD_RELAY_WORKER_PROCESSES": "0"}, tmp_path, euid=1000)


def test_changed_settings_name_each_change_and_mask_passwords() -> None:
    lines = changed_settings({"RELAY_RATE_PER_MIN": "120", "RELAY_REDIS_URL": "redis://:s3cret@h/0"},
                             {"RELAY_REDIS_URL": "redis://:n3w@h/0", "RELAY_PREFIX": "x"})
    assert lines == ["RELAY_PREFIX: (default) -> x", "RELAY_RATE_PER_MIN: 120 -> (default)",
                     "RELAY_REDIS_URL: redis://:***@h/0 -> redis://:***@h/0"]


def test_changed_settings_never_show_a_password_setting() -> None:
    """Found trying ``./start.sh --role ...`` from the README: the report of changed
    settings printed RELAY_SENTINEL_PASSWORD in full (promise 6)."""
    lines = changed_settings({}, {"RELAY_SENTINEL_PASSWORD": "S3ntinelTrialPw"})
    lines += changed_settings({"RELAY_SENTINEL_PASSWORD": "old-Secret-1"},
                              {"RELAY_SENTINEL_PASSWORD": "new-Secret-2"})
    assert lines == ["RELAY_SENTINEL_PASSWORD: (default) -> (set)",
                     "RELAY_SENTINEL_PASSWORD: (set) -> (set, changed)"]


def test_stack_options_list_every_bad_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        StackOptions.from_env({"PD_RELAY_PORT": "70000", "PD_RELAY_INGRESS_NODES": "0",
                               "PD_RELAY_MODE": "k8s"}, tmp_path)
    assert len(caught.value.problems) == 3
    demo = StackOptions.from_env({}, tmp_path, demo=True, euid=1000)
    assert demo.bind == "127.0.0.1" and demo.keys_file == tmp_path / "run" / "demo-keys.txt"


def test_the_curl_to_try_names_a_routing_key_unless_anyone_may_send(tmp_path: Path,
                                                                     capsys) -> None:
    from relay.stack.report import announce

    options = StackOptions.from_env({"PD_RELAY_PORT": "9999"}, tmp_path)
    announce(options, "logs/", anonymous=False)
    closed = capsys.readouterr().out
    assert "http://127.0.0.1:9999/v2/enqueue" in closed and '"routing_key":' in closed
    announce(options, "logs/", anonymous=True)
    assert '"routing_key":' not in capsys.readouterr().out
