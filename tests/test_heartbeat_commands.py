"""``pd-relay heartbeat add|list|pause|resume|remove|token`` on fakeredis, with a routes
file that has a check of its own."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest

from relay import cli
from relay.auth import digest, new_token
from relay.heartbeats import commands
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.settings import Settings

ROUTES = """
channels:
  - {name: ops-slack, type: slack, url: "https://hooks.example.com/x"}
sources:
  - {name: a, api_keys: ["%s"]}
  - {name: b, api_keys: ["%s"]}
routes:
  - {name: ops, keys: [key-1], channels: [ops-slack]}
heartbeats:
  - {name: nightly, cron: "30 2 * * *", tz: Europe/Berlin, grace: 1h, route: ops}
"""


@pytest.fixture
def setup(settings: Settings, tmp_path: Path, fake: fakeredis.FakeRedis,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Heartbeats]:
    path = tmp_path / "routes.yml"
    path.write_text(ROUTES % (digest(new_token()[0]), digest(new_token()[0])))
    monkeypatch.setattr(commands, "connect", lambda settings: fake)
    found = replace(settings, routes_file=path, key_names=("key-1", "key-2", "key-3"))
    return found, Heartbeats(fake, Names(found.prefix))


def run(settings: Settings, *argv: str) -> int:
    args = cli._parser().parse_args(["heartbeat", *argv])
    return commands.command(settings, args)


def test_add_checks_its_options_as_the_routes_file_does(
        setup: tuple[Settings, Heartbeats], capsys: pytest.CaptureFixture[str]) -> None:
    settings, store = setup
    assert run(settings, "add", "start", "--period", "5x", "--keys", "nope", "--sources", "c",
               "--watchdog", "alertname>=1", "--tz", "Mars/Base") == 2
    err = capsys.readouterr().err
    for expected in ["--name: 'start' is a ping signal", "--period: want a duration",
                     "--keys: no key named 'nope'", "--sources: no source named 'c'",
                     "--watchdog: 'alertname>=1' is not a label matcher",
                     "--tz: want an IANA time zone"]:
        assert expected in err, (expected, err)
    assert run(settings, "add", "nightly", "--period", "5m", "--keys", "key-1") == 2
    assert "a check of the routes file already" in capsys.readouterr().err
    assert store.stored_checks() == []
    assert run(settings, "add", "backup", "--period", "1h", "--grace", "10m", "--keys",
               "key-1,key-2", "--watchdog", 'alertname="Watchdog"', "--sources",
               "a,b", "--severity", "error") == 0
    assert "heartbeat backup added (every 1h, grace 10m)" in capsys.readouterr().out
    [check] = store.stored_checks()
    assert (check.period_s, check.grace_s, check.keys, check.sources, check.severity,
            check.origin) == (3600.0, 600.0, ("key-1", "key-2"), ("a", "b"), "error", "cli")
    assert run(settings, "add", "backup", "--period", "1h", "--keys", "key-1") == 1
    assert "exists already" in capsys.readouterr().err
    assert run(settings, "add", "via-route", "--cron", "*/5 * * * *", "--route", "ops") == 0


def test_list_shows_file_and_run_time_checks_with_their_state(
        setup: tuple[Settings, Heartbeats], capsys: pytest.CaptureFixture[str]) -> None:
    settings, store = setup
    run(settings, "add", "backup", "--period", "1h", "--keys", "key-1")
    [backup] = store.stored_checks()
    store.ping(backup, "fail", exit_status=2)
    capsys.readouterr()
    assert run(settings, "list", "--json") == 0
    found = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in found["heartbeats"]}
    assert (rows["nightly"]["origin"], rows["nightly"]["state"], rows["nightly"]["tz"]) == \
        ("file", "new", "Europe/Berlin")
    assert rows["nightly"]["keys"] == ["key-1"] and rows["nightly"]["channels"] == ["ops-slack"]
    assert (rows["backup"]["origin"], rows["backup"]["state"], rows["backup"]["outages"]) == \
        ("cli", "down", 1)
    assert rows["backup"]["last_signal"] == "fail" and rows["backup"]["token"] is False
    assert run(settings, "list") == 0
    text = capsys.readouterr().out
    assert "nightly  new  (file, cron '30 2 * * *' Europe/Berlin, grace 1h)" in text
    assert "backup  down  (cli, every 1h, grace 5m)" in text


def test_token_is_printed_once_and_only_its_hash_kept(
        setup: tuple[Settings, Heartbeats], capsys: pytest.CaptureFixture[str],
        fake: fakeredis.FakeRedis) -> None:
    settings, store = setup
    assert run(settings, "token", "nightly") == 0  # a routes-file check's too
    out = capsys.readouterr().out
    token = next(word for word in out.split() if word.startswith("pdh_"))
    assert f"/ping/{token}/nightly" in out
    # the curl it suggests is the README's cron recipe's (timeout, retries, quiet)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [suggested] = [line.strip() for line in out.splitlines() if "curl" in line]
    curl = suggested.split(" https://")[0]
    assert f"{curl} https://relay.example:8080/ping/TOKEN/backup" in readme, suggested
    assert store.token_matches("nightly", token)
    dump = json.dumps({key: fake.dump(key).hex() for key in fake.keys("*")})  # type: ignore[union-attr]
    assert token not in dump and token.encode().hex() not in dump
    assert run(settings, "token", "nope") == 1
    assert "no heartbeat check 'nope'" in capsys.readouterr().err
    run(settings, "list", "--json")
    assert json.loads(capsys.readouterr().out)["heartbeats"][0]["token"] is True


def test_pause_resume_and_remove(setup: tuple[Settings, Heartbeats],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    settings, store = setup
    run(settings, "add", "backup", "--period", "1h", "--keys", "key-1")
    [backup] = store.stored_checks()
    store.ping(backup, "fail")
    assert run(settings, "pause", "backup") == 0
    assert "its incident heartbeat:backup stays open" in capsys.readouterr().out
    assert run(settings, "resume", "backup") == 0
    assert run(settings, "resume", "backup") == 1
    assert "is not paused" in capsys.readouterr().err
    assert run(settings, "pause", "nightly") == 0  # a routes-file check, never pinged
    assert store.states([backup])[0].state == "new"
    assert run(settings, "remove", "nightly") == 2
    assert "remove it there" in capsys.readouterr().err
    store.ping(backup, "fail")
    assert run(settings, "remove", "backup") == 0
    assert "its open incident (heartbeat:backup) is resolved" in capsys.readouterr().out
    assert store.stored_checks() == []
    assert run(settings, "pause", "backup") == 1


def test_the_command_is_registered_and_checks_the_store_format() -> None:
    assert cli.COMMANDS["heartbeat"] is commands.command
    assert cli.STORED["heartbeat"] == (True, 0)


def test_routes_check_counts_the_heartbeat_checks(setup: tuple[Settings, Heartbeats],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from relay.routes.commands import routes_command

    settings, _ = setup
    assert routes_command(settings, cli._parser().parse_args(["routes", "check"])) == 0
    assert "1 heartbeat check(s)" in capsys.readouterr().out


def test_list_says_since_when_a_check_is_down_and_the_relays_last_gap(
        setup: tuple[Settings, Heartbeats], fake: fakeredis.FakeRedis,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found following the README: ``heartbeat list`` showed a down check as ``down at -``
    (nothing about when it went down) and not the relay's last gap, which the README says
    it shows with ``status``."""
    settings, store = setup
    run(settings, "add", "backup", "--period", "1h", "--keys", "key-1")
    [backup] = store.stored_checks()
    store.ping(backup, "fail", exit_status=2)
    [state] = store.states([backup])
    assert state.state == "down" and state.since is not None
    seconds, micros = fake.time()
    now_ms = seconds * 1000 + micros // 1000
    fake.hset(store.names.heartbeat_gap, mapping={
        "at": now_ms - 10_000, "gap_ms": 130_000, "reason": "evaluator", "since": now_ms})
    capsys.readouterr()
    assert run(settings, "list") == 0
    text = capsys.readouterr().out
    since = datetime.fromtimestamp(state.since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "backup  down  (cli, every 1h, grace 5m)" in text
    assert f"down since {since}" in text, text
    assert "HEARTBEATS: the relay was away 2m10s" in text, text


@pytest.mark.parametrize("action", ["pause", "resume", "remove", "token"])
def test_a_name_that_is_no_check_is_refused_and_nothing_stored(
        setup: tuple[Settings, Heartbeats], capsys: pytest.CaptureFixture[str],
        fake: fakeredis.FakeRedis, action: str) -> None:
    settings, store = setup
    assert run(settings, action, "nope") == 1
    assert "no heartbeat check 'nope'" in capsys.readouterr().err
    assert fake.keys("*nope*") == [] and not store.has_token("nope")
    fake.hset(store.names.heartbeat("gone"), mapping={"v": 1, "state": "down"})  # a check
    assert run(settings, action, "gone") == 1  # taken out of the routes file: no check now
    assert fake.hgetall(store.names.heartbeat("gone")) == {"v": "1", "state": "down"}


def test_add_of_a_name_with_leftovers_starts_clean(
        setup: tuple[Settings, Heartbeats], capsys: pytest.CaptureFixture[str]) -> None:
    settings, store = setup
    old = store.new_token("backup")  # of a routes-file check backup, since taken out
    assert run(settings, "add", "backup", "--period", "1h", "--keys", "key-1") == 0
    assert not store.token_matches("backup", old)


def test_list_reads_the_tokens_in_one_call_not_one_a_check(
        setup: tuple[Settings, Heartbeats], capsys: pytest.CaptureFixture[str],
        fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 checks were 10,000 HEXISTS round trips (seconds to a Redis across a
    network): the calls ``list`` makes do not grow with the number of checks."""
    settings, store = setup
    for n in range(60):
        run(settings, "add", f"job-{n}", "--period", "1h", "--keys", "key-1")
    store.new_token("job-7")
    calls: list[object] = []
    plain = fake.execute_command
    monkeypatch.setattr(fake, "execute_command",
                        lambda *args, **kw: calls.append(args[0]) or plain(*args, **kw))
    capsys.readouterr()
    assert run(settings, "list", "--json") == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["heartbeats"]}
    assert len(rows) == 61 and rows["job-7"]["token"] is True
    assert [name for name, row in rows.items() if row["token"]] == ["job-7"]
    assert len(calls) < 20, calls
