"""``pd-relay history migrate`` and ``pd-relay history-exporter`` as commands: they need
RELAY_HISTORY_DSN, say what they did, refuse a later release's schema with the reason,
and never print the password."""

from __future__ import annotations

import psycopg
import pytest

from relay.cli import main
from relay.history.pg import SCHEMA_VERSION
from relay.names import Names
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture


@pytest.fixture
def env(monkeypatch, tmp_path, keys) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("\n".join(keys) + "\n")
    monkeypatch.setenv("RELAY_KEYS_FILE", str(path))
    for name in ("RELAY_HISTORY_DSN", "RELAY_ROUTES_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("relay.cli.configure", lambda *args: None)  # pytest's capture: no
    # log handler of a test left writing to its closed streams


def test_migrate_applies_then_says_up_to_date(env, pg_dsn, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RELAY_HISTORY_DSN", pg_dsn)
    assert main(["history", "migrate"]) == 0
    first = capsys.readouterr().out
    assert "schema version 0 -> 1 (record)" in first
    assert main(["history", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    password = psycopg.conninfo.conninfo_to_dict(pg_dsn)["password"]
    assert password not in first and ":***@" in first


def test_migrate_refuses_a_later_releases_schema(env, pg_dsn, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RELAY_HISTORY_DSN", pg_dsn)
    assert main(["history", "migrate"]) == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pd_relay.migrations (version, name) VALUES (%s, 'x')",
                     (SCHEMA_VERSION + 1,))
    assert main(["history", "migrate"]) == 2
    assert "later release" in capsys.readouterr().out


def test_without_a_dsn_both_say_so(env, capsys) -> None:
    assert main(["history", "migrate"]) == 2
    assert main(["history-exporter"]) == 2
    assert capsys.readouterr().out.count("RELAY_HISTORY_DSN is not set") == 2


def test_migrate_names_a_server_it_cannot_reach_without_its_password(env, monkeypatch,
                                                                     capsys) -> None:
    monkeypatch.setenv("RELAY_HISTORY_DSN", "postgresql://relay:pw-secret@127.0.0.1:1/db")
    assert main(["history", "migrate"]) == 1
    said = capsys.readouterr().out
    assert "pw-secret" not in said and "127.0.0.1" in said


def test_the_lua_finds_the_export_hash_by_the_streams_name() -> None:
    names = Names("anything")
    assert names.history_export == names.history + ":export"  # relay.history.loss


def test_the_exporter_refuses_a_database_not_migrated(env, pg_dsn, monkeypatch, capsys,
                                                       real_redis) -> None:
    sock = real_redis.connection_pool.connection_kwargs["path"]
    monkeypatch.setenv("RELAY_REDIS_URL", f"unix://{sock}")
    monkeypatch.setenv("RELAY_HISTORY_DSN", pg_dsn)
    monkeypatch.setattr("relay.commands.history.exit_on_sigterm", lambda: None)
    assert main(["history-exporter"]) == 2
    assert "run `pd-relay history migrate`" in capsys.readouterr().out
