"""The record in PostgreSQL watched from Redis (relay.history.pg.report): the export's lag,
the entries exported and lost, in /metrics, the self-check's alarms and `status`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from relay.history.pg import report
from relay.housekeeping import selfcheck
from relay.names import Names
from relay.routes.config import load
from relay.settings import Settings
from tests.conftest import UNIX

NAMES = Names("pdr")
DSN = "postgresql://relay:s3cret-pw@127.0.0.1:5432/pd_relay"


@pytest.fixture
def setup(tmp_path: Path, keys: tuple[str, ...]):
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n{keys[1]} ops\n")
    (tmp_path / "routes.yml").write_text(
        "self_alert:\n  keys: [ops]\n  for_s: 0\n  history_lag_s: 120\n")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                  "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml"),
                                  "RELAY_HISTORY_DSN": DSN})
    return settings, load(settings.routes_file, settings.key_names)


def exporter_behind(fake, oldest_ms: int) -> None:
    """One entry at ``oldest_ms`` the export group has not been delivered yet."""
    fake.xadd(NAMES.history, {"s": "attempt", "k": "1", "x": "{}"}, id=f"{oldest_ms}-0")
    fake.xgroup_create(NAMES.history, NAMES.history_group, id="0")


def history_ids(found) -> list[str]:
    return [c.id for c in found if c.id.startswith("history")]


def test_no_record_no_figures(fake, settings) -> None:
    assert report.read(fake, NAMES, settings, 0) is None


def test_the_figures_read_from_redis(setup, fake) -> None:
    settings, _ = setup
    exporter_behind(fake, 10_000)
    fake.hset(NAMES.history_export, mapping={"exported": 7, "lost": 2, "last": "9000-0",
                                             "at_ms": 9_500})
    got = report.read(fake, NAMES, settings, 70_000)
    assert got is not None
    assert (got.lag_s, got.exported, got.lost, got.last) == (60.0, 7, 2, "9000-0")
    assert "s3cret" not in json.dumps(got.as_json()) + got.line()
    assert got.as_json()["dsn"].startswith("postgresql://relay:")


def test_the_self_check_alarms_when_the_export_lags(setup, fake) -> None:
    settings, routes = setup
    now = 1_000_000.0
    assert history_ids(selfcheck.conditions(fake, NAMES, settings, routes, now=now)) == []
    exporter_behind(fake, int((now - 100) * 1000))
    assert history_ids(selfcheck.conditions(fake, NAMES, settings, routes, now=now)) == []
    found = selfcheck.conditions(fake, NAMES, settings, routes, now=now + 30)
    assert history_ids(found) == ["history-lag"]
    [lag] = [c for c in found if c.id == "history-lag"]
    assert "130 s" in lag.summary and "s3cret" not in lag.summary


def test_the_self_check_alarms_while_the_lost_count_grows(setup, fake) -> None:
    settings, routes = setup
    now = 1_000_000.0
    fake.hset(NAMES.history_export, "lost", 3)
    found = selfcheck.conditions(fake, NAMES, settings, routes, now=now)
    assert history_ids(found) == ["history-lost"]
    assert "3 " in next(c.summary for c in found if c.id == "history-lost")
    # no more lost: the alarm clears once the count stayed still for LOST_QUIET_S
    later = now + selfcheck.LOST_QUIET_S + 1
    assert history_ids(selfcheck.conditions(fake, NAMES, settings, routes, now=later)) == []
    fake.hincrby(NAMES.history_export, "lost", 1)
    assert history_ids(selfcheck.conditions(fake, NAMES, settings, routes,
                                            now=later + 1)) == ["history-lost"]


def test_without_a_record_no_history_alarm(setup, fake) -> None:
    settings, routes = setup
    plain = replace(settings, history_dsn="")
    fake.hset(NAMES.history_export, "lost", 3)
    exporter_behind(fake, 1_000)
    assert history_ids(selfcheck.conditions(fake, NAMES, plain, routes, now=1e6)) == []


def test_metrics_carry_the_lag_exported_and_lost(setup, fake) -> None:
    from relay.app import create_app

    settings, _ = setup
    exporter_behind(fake, 1_000)
    fake.hset(NAMES.history_export, mapping={"exported": 7, "lost": 2})
    client = create_app(settings, fake).test_client()
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line.startswith("pd_relay_history_")}
    assert lines["pd_relay_history_exported_total"] == 7
    assert lines["pd_relay_history_lost_total"] == 2
    assert lines["pd_relay_history_export_lag_seconds"] > 1000  # the entry is from 1970


def test_metrics_without_a_record_have_no_history_figures(client, fake) -> None:
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    assert "pd_relay_history_export_lag_seconds" not in text


def test_status_shows_the_record_dsn_masked(setup, fake, monkeypatch, capsys) -> None:
    from relay.commands import operations

    settings, _ = setup
    monkeypatch.setattr(operations, "connect", lambda _settings: fake)
    exporter_behind(fake, 1_000)
    fake.hset(NAMES.history_export, mapping={"exported": 7, "lost": 2})
    args = type("Args", (), {"json": False, "watch": 0})()
    assert operations.status(settings, args) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("HISTORY")]
    assert "7 entries exported, 2 lost" in line and "lag" in line
    assert "s3cret" not in out and "127.0.0.1:5432/pd_relay" in line
    args.json = True
    operations.status(settings, args)
    out = capsys.readouterr().out
    shown = json.loads(out)["history"]
    assert (shown["exported"], shown["lost"]) == (7, 2) and shown["lag_seconds"] > 0
    assert "s3cret" not in out


def test_status_without_a_record(fake, settings, monkeypatch, capsys) -> None:
    from relay.commands import operations

    monkeypatch.setattr(operations, "connect", lambda _settings: fake)
    args = type("Args", (), {"json": True, "watch": 0})()
    operations.status(settings, args)
    assert json.loads(capsys.readouterr().out)["history"] is None
