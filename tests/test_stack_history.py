"""The history's record in a stack: the exporter among the stack's programs (its DSN in
its environment, never its command line), RELAY_HISTORY=postgres, the schema migrated
before the processes start, compose's services, and the stack's own PostgreSQL started
and stopped (a real one)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from supervisor.options import ServerOptions

from relay.cli import _parser
from relay.errors import ConfigError
from relay.keys import read_keys
from relay.stack import history
from relay.stack.compose import compose_env, override
from relay.stack.model import EXPORTER, relay_programs
from relay.stack.options import StackOptions
from relay.stack.postgres import binaries
from relay.stack.supervisor import render
from tests.conftest import make_key

PASSWORD = "pg-s3cret%25pass"
DSN = f"postgresql://pd_relay:{PASSWORD}@db.example.org:5432/pd_relay"


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(f"{make_key()}\n")
    return path


def test_the_exporter_gets_the_dsn_in_its_environment_never_its_command_line(
        tmp_path: Path, keys_file: Path) -> None:
    env = {"RELAY_KEYS_FILE": str(keys_file), "RELAY_HISTORY_DSN": DSN}
    programs = relay_programs(["pd-relay"], env, read_keys(keys_file), keys_file, [8081], None)
    [exporter] = [p for p in programs if p.role == EXPORTER]
    assert exporter.argv == ("pd-relay", "history-exporter")
    _parser().parse_args(list(exporter.argv[1:]))
    conf = tmp_path / "supervisord.conf"
    (tmp_path / "logs").mkdir()
    conf.write_text(render(programs, tmp_path, tmp_path))
    options = ServerOptions()  # supervisord's own reading of the file
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    read = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    assert PASSWORD not in read[EXPORTER].command
    for program in programs:  # every relay process reads the record (the API, trace)
        if program.role != "simulator":
            assert read[program.name].environment["RELAY_HISTORY_DSN"] == DSN, program.name
    without = relay_programs(["pd-relay"], {"RELAY_KEYS_FILE": str(keys_file)},
                             read_keys(keys_file), keys_file, [8081], None)
    assert EXPORTER not in {p.role for p in without}


def test_relay_history_chooses_the_stacks_own_postgresql(tmp_path: Path) -> None:
    options = StackOptions.from_env({"RELAY_HISTORY": "postgres",
                                     "PD_RELAY_POSTGRES_PORT": "55432"}, tmp_path, euid=1000)
    assert (options.history, options.postgres_port) == ("postgres", 55432)
    assert StackOptions.recorded(options.public()) == options
    assert history.wanted(options, {})
    assert not history.wanted(options, {"RELAY_HISTORY_DSN": DSN})  # given: it is used
    plain = StackOptions.from_env({"RELAY_HISTORY": "stream"}, tmp_path, euid=1000)
    assert plain.history == "" and "history" not in plain.public()  # as recorded before
    assert not history.wanted(plain, {})
    with pytest.raises(ConfigError) as refused:
        StackOptions.from_env({"RELAY_HISTORY": "mysql", "PD_RELAY_POSTGRES_PORT": "0"},
                              tmp_path, euid=1000)
    assert "RELAY_HISTORY='mysql'" in str(refused.value)
    assert "PD_RELAY_POSTGRES_PORT" in str(refused.value)


def test_migrate_runs_with_the_dsn_in_its_environment_and_says_why_it_failed() -> None:
    calls = []

    def run(argv, **kwargs):
        calls.append((argv, kwargs["env"]))
        return subprocess.CompletedProcess(argv, 1, "", "the database was migrated by a "
                                           "later release (version 7)")

    with pytest.raises(ConfigError, match="later release"):
        history.migrate({"RELAY_HISTORY_DSN": DSN}, run=run)
    [(argv, env)] = calls
    assert argv[-2:] == ["history", "migrate"] and PASSWORD not in " ".join(argv)
    _parser().parse_args(argv[-2:])
    assert env["RELAY_HISTORY_DSN"] == DSN
    history.migrate({}, run=run)  # no record: nothing to migrate
    assert len(calls) == 1

    def hangs(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    with pytest.raises(ConfigError, match="did not finish"):
        history.migrate({"RELAY_HISTORY_DSN": DSN}, run=hangs)


def compose_services(tmp_path: Path, keys_file: Path, env: dict[str, str],
                     pg_password: str = "", history_option: str = "") -> dict:
    options = StackOptions.from_env({"RELAY_HISTORY": history_option} if history_option
                                    else {}, tmp_path, euid=1000)
    options = StackOptions(**{**options.__dict__, "keys_file": keys_file})
    composed = compose_env(dict(env, RELAY_KEYS_FILE=str(keys_file)), False, "redis-pw",
                           "single", pg_password)
    return override(options, composed, read_keys(keys_file), caller=(1000, 1000))["services"]


def test_compose_migrates_before_the_ingress_and_the_exporter_start(tmp_path: Path,
                                                                   keys_file: Path) -> None:
    services = compose_services(tmp_path, keys_file, {"RELAY_HISTORY_DSN": DSN})
    assert services[EXPORTER]["command"] == ["history-exporter"]
    assert services["history-migrate"]["command"] == ["history", "migrate"]
    assert services["history-migrate"]["restart"] == "no"
    done = {"condition": "service_completed_successfully"}
    assert services["ingress"]["depends_on"]["history-migrate"] == done
    assert services[EXPORTER]["depends_on"]["history-migrate"] == done
    assert "postgres" not in services  # the DSN names another server
    assert services[EXPORTER]["environment"]["RELAY_HISTORY_DSN"] == DSN.replace("$", "$$")
    plain = compose_services(tmp_path, keys_file, {})
    assert EXPORTER not in plain and "history-migrate" not in plain


def test_compose_runs_its_own_postgresql_with_relay_history_postgres(tmp_path: Path,
                                                                    keys_file: Path) -> None:
    services = compose_services(tmp_path, keys_file, {}, "pw-made-once", "postgres")
    assert services["postgres"]["environment"] == {"POSTGRES_PASSWORD": "pw-made-once"}
    dsn = services[EXPORTER]["environment"]["RELAY_HISTORY_DSN"]
    assert dsn == "postgresql://pd_relay:pw-made-once@postgres:5432/pd_relay"
    assert services["history-migrate"]["depends_on"]["postgres"] == {
        "condition": "service_healthy"}
    base = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    postgres = base["services"]["postgres"]
    assert postgres["image"] == "postgres:15" and postgres["profiles"] == ["postgres"]
    assert postgres["environment"]["POSTGRES_USER"] == "pd_relay"


def has_postgres() -> bool:
    try:
        binaries()
    except ConfigError:
        return False
    return True


@pytest.mark.skipif(not has_postgres(), reason="no PostgreSQL server here (Debian's "
                    "postgresql package; scripts/test installs it as root)")
def test_the_stacks_own_postgresql_starts_once_and_stops(tmp_path: Path, capsys) -> None:
    import psycopg

    from relay.stack.processes import free_port

    run_dir = Path(tempfile.mkdtemp(prefix="pdr-stack-"))  # as root, `postgres` enters it
    run_dir.chmod(0o755)
    options = StackOptions.from_env({"RELAY_HISTORY": "postgres",
                                     "PD_RELAY_RUN_DIR": str(run_dir),
                                     "PD_RELAY_POSTGRES_PORT": str(free_port())},
                                    tmp_path, euid=1000)
    local = history.local_postgres(options)
    assert local.home == options.state_dir / "postgres"
    try:
        dsn = history.start_local(options)
        said = capsys.readouterr().err
        assert "made and started in" in said and local.password_file.read_text().strip() \
            not in said
        assert history.running(local)
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("pd_relay",)
        pid = (local.data / "postmaster.pid").read_text().split()[0]
        assert history.wanted(options, {"RELAY_HISTORY_DSN": dsn})  # its own, recorded
        assert history.start_local(options) == dsn  # running: left alone
        assert (local.data / "postmaster.pid").read_text().split()[0] == pid
        assert capsys.readouterr().err == ""
    finally:
        history.stop_local(options)
    assert not history.running(local)
    shutil.rmtree(run_dir, ignore_errors=True)


def test_compose_reads_the_history_services(tmp_path: Path, keys_file: Path) -> None:
    from tests.test_stack import ROOT, compose_command

    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    services = compose_services(tmp_path, keys_file, {}, "pw-made-once", "postgres")
    generated = tmp_path / "override.yml"
    generated.write_text(yaml.safe_dump({"services": services}))
    done = subprocess.run([*compose, "-p", "pd-relay", "-f", str(ROOT / "docker-compose.yml"),
                           "-f", str(generated), "--profile", "postgres", "config"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert resolved["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pw-made-once"
    assert resolved["postgres"]["environment"]["POSTGRES_USER"] == "pd_relay"
    assert set(resolved["ingress"]["depends_on"]) == {"redis", "history-migrate"}
    assert resolved[EXPORTER]["command"] == ["history-exporter"]


def test_a_changed_dsn_is_said_with_its_password_masked() -> None:
    from relay.stack.report import changed_settings

    lines = changed_settings({"RELAY_HISTORY_DSN": DSN},
                             {"RELAY_HISTORY_DSN": DSN.replace("db.example", "db2.example")})
    assert len(lines) == 1 and "db2.example.org" in lines[0]
    assert PASSWORD not in lines[0] and "pg-s3cret" not in lines[0]


@pytest.mark.skipif(not has_postgres(), reason="no PostgreSQL server here (Debian's "
                    "postgresql package; scripts/test installs it as root)")
def test_a_start_that_fails_its_checks_leaves_no_postgresql_running(
        keys_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relay.stack import up
    from relay.stack.processes import free_port

    top = Path(tempfile.mkdtemp(prefix="pdr-stack-"))
    top.chmod(0o755)
    (top / "run").mkdir()
    (top / "run").chmod(0o755)  # (as root, `postgres` enters it)
    environ = {"RELAY_HISTORY": "postgres", "PD_RELAY_MODE": "native",
               "PD_RELAY_RUN_DIR": str(top / "run"), "PD_RELAY_DATA_DIR": str(top / "data"),
               "PD_RELAY_POSTGRES_PORT": str(free_port()), "RELAY_KEYS_FILE": str(keys_file)}
    options = StackOptions.from_env(environ, top, euid=1000)
    options = StackOptions(**{**options.__dict__, "user": "", "system_dir": None})
    seen = {}
    real = subprocess.run

    def check(argv, **kwargs):  # `pd-relay check` finds something wrong
        if argv[-1:] != ["check"]:
            return real(argv, **kwargs)
        seen["dsn"] = kwargs["env"].get("RELAY_HISTORY_DSN", "")
        seen["running"] = history.running(history.local_postgres(options))
        return subprocess.CompletedProcess(argv, 1, "", "pd-relay: something is wrong\n")

    monkeypatch.setattr(up.subprocess, "run", check)
    try:
        assert up.apply(options, environ, None) == 1
        assert seen["running"] and seen["dsn"].startswith("postgresql://pd_relay:")
        assert not history.running(history.local_postgres(options))  # stopped again
    finally:
        history.local_postgres(options).stop()
        shutil.rmtree(top, ignore_errors=True)
