"""The stored formats' version (promise 9, relay.formats): every process that touches the
queues checks it at start; one that cannot read what is stored refuses, naming both
versions; an older store is upgraded, a fresh one written; a rollback marks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from relay import cli, formats
from relay.app import create_app
from relay.errors import StoreFormatError
from relay.names import Names
from relay.settings import Settings

NAMES = Names()
# Every command that reaches Redis, as an operator or the stack runs it
PROCESSES = [["ingress"], ["worker", "--key-index", "0"], ["channel-worker"], ["check"],
             ["status"], ["trace", "x"], ["forget-key", "abc"], ["queue", "show", "0"],
             ["dead-letters", "list"], ["send-test", "--key-index", "0"],
             ["channels", "status"], ["maintenance", "list"]]


@pytest.fixture
def started(tmp_path: Path, keys: tuple[str, ...], fake: fakeredis.FakeRedis,
            monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """``relay.cli.main`` on ``fake``, each command replaced by a stand-in that records
    that it started (the real ones would serve, or deliver, until stopped)."""
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    monkeypatch.setenv("RELAY_KEYS_FILE", str(tmp_path / "keys.txt"))
    monkeypatch.setattr("relay.formats.connect", lambda *args, **kwargs: fake)
    monkeypatch.setattr("relay.cli.configure", lambda *args: None)
    ran: list[list[str]] = []

    def stand_in(settings: Settings, args: Any) -> int:
        ran.append([args.command])
        return 0

    monkeypatch.setattr(cli, "COMMANDS", dict.fromkeys(cli.COMMANDS, stand_in))
    return ran


@pytest.mark.parametrize("argv", PROCESSES, ids=" ".join)
def test_a_process_refuses_a_store_a_newer_release_wrote(argv, started, fake, capsys) -> None:
    fake.set(NAMES.format, formats.FORMAT + 1)
    assert cli.main(argv) == 2
    assert started == []  # it never started: the ingress answers nothing
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"version {formats.FORMAT + 1}" in err and f"(version {formats.FORMAT})" in err
    assert fake.get(NAMES.format) == str(formats.FORMAT + 1)  # never lowered


def test_the_ingress_app_refuses_a_store_a_newer_release_wrote(settings, fake) -> None:
    fake.set(NAMES.format, 7)
    with pytest.raises(StoreFormatError, match=f"version 7, newer .*version {formats.FORMAT}"):
        create_app(settings, client=fake)
    assert fake.get(NAMES.format) == "7"


@pytest.mark.parametrize("argv", PROCESSES, ids=" ".join)
def test_a_process_starts_on_a_store_it_reads(argv, started, fake) -> None:
    fake.hset(NAMES.known_keys, "abc", "db ****1234")  # v0.1.0 stored no version
    assert cli.main(argv) == 0 and started == [argv[:1]]
    upgraded = argv[0] not in ("check", "status", "trace")  # these only read it
    assert fake.get(NAMES.format) == (str(formats.FORMAT) if upgraded else None)


def test_an_older_store_is_upgraded_and_its_stale_owners_forgotten(fake) -> None:
    fake.hset(NAMES.known_keys, "abc", "db ****1234")
    fake.hset(NAMES.owners, "incident", "s:gone")  # left by a rollback to version 1
    fake.zadd(NAMES.incidents("abc"), {"incident": 1})
    found = formats.ensure(fake, NAMES)
    assert found == formats.Found(1, "upgraded")
    assert fake.get(NAMES.format) == str(formats.FORMAT)
    assert not fake.exists(NAMES.owners) and fake.zcard(NAMES.incidents("abc")) == 1
    fake.hset(NAMES.owners, "incident", "s:new")  # written by this release: kept from now on
    assert formats.ensure(fake, NAMES) == formats.Found(formats.FORMAT, "current")
    assert fake.hget(NAMES.owners, "incident") == "s:new"


def test_a_fresh_store_is_written(fake, settings) -> None:
    create_app(settings, client=fake)
    assert fake.get(NAMES.format) == str(formats.FORMAT)
    assert formats.stored(fake, NAMES) == formats.FORMAT


def test_a_store_older_than_this_release_reads_is_refused(fake, monkeypatch) -> None:
    monkeypatch.setattr(formats, "READS", 2)
    fake.hset(NAMES.known_keys, "abc", "db ****1234")
    with pytest.raises(StoreFormatError, match="version 1 .*older than this release reads"):
        formats.ensure(fake, NAMES)
    with pytest.raises(StoreFormatError, match="version 1 "):
        formats.ensure(fake, NAMES, upgrade=False)
    assert fake.get(NAMES.format) is None


def test_a_rollback_marks_the_store_and_the_next_upgrade_migrates_again(
        started, fake, capsys, monkeypatch) -> None:
    monkeypatch.setattr("relay.commands.storeformat.connect", lambda *args: fake)
    cli.COMMANDS["format"] = cli.storeformat.command  # the real one
    fake.set(NAMES.format, formats.FORMAT)
    assert cli.main(["format", "--rollback-to", "1"]) == 0  # says what it would do
    assert fake.get(NAMES.format) == str(formats.FORMAT)
    assert cli.main(["format", "--rollback-to", "1", "--yes"]) == 0
    assert fake.get(NAMES.format) == "1"
    fake.hset(NAMES.owners, "incident", "s:stale")
    assert formats.ensure(fake, NAMES) == formats.Found(1, "upgraded")
    assert not fake.exists(NAMES.owners)
    capsys.readouterr()
    assert cli.main(["format"]) == 0
    assert f"version {formats.FORMAT} ({formats.RELEASES[formats.FORMAT]})" in \
        capsys.readouterr().out


def test_a_rollback_never_lowers_what_a_newer_release_wrote(fake) -> None:
    fake.set(NAMES.format, formats.FORMAT + 1)
    with pytest.raises(StoreFormatError, match="newer"):
        formats.rollback(fake, NAMES, 1)
    assert fake.get(NAMES.format) == str(formats.FORMAT + 1)
    with pytest.raises(StoreFormatError, match="cannot roll back to .* version 0"):
        formats.rollback(fake, NAMES, 0)


def test_redis_down_at_start_is_said_and_the_version_checked_at_the_next(settings,
                                                                        caplog) -> None:
    from dataclasses import replace

    down = replace(settings, redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.2)
    assert formats.at_start(down) is None
    assert "checked when the relay's processes start" in caplog.text
    with pytest.raises(Exception, match="Connection refused|Error"):
        formats.at_start(down, redis_down=0)


def test_a_rollback_takes_the_purges_gaps_out_of_the_arrival_lists(
        started, fake, capsys, monkeypatch, settings) -> None:
    """v0.1.0 reads a gap in an arrival list as an event (this release's purge leaves
    them there): the rollback takes them out, and `laned` (which counted each -1) with
    them, so that what waits counts right on both releases."""
    from relay.keyring import known_keys
    from relay.keys import key_id
    from relay.status import read_status
    from relay.store import Record

    monkeypatch.setattr("relay.commands.storeformat.connect", lambda *args: fake)
    cli.COMMANDS["format"] = cli.storeformat.command
    fake.set(NAMES.format, formats.FORMAT)
    kid = key_id(settings.routing_keys[0])
    fake.hset(NAMES.known_keys, kid, "key-1 ...")  # as any process writes at start
    assert kid in known_keys(fake, NAMES)
    event = Record("alert", {"event_action": "trigger", "dedup_key": "x"}, 1).encode()
    fake.rpush(NAMES.queue(kid), "", event, "", "")
    fake.hset(NAMES.stats(kid), "laned", -3)
    assert read_status(fake, NAMES, settings)[0]["queued"] == 1
    assert cli.main(["format", "--rollback-to", "1", "--yes"]) == 0
    assert "took 3 gap(s)" in capsys.readouterr().out
    assert fake.lrange(NAMES.queue(kid), 0, -1) == [event]
    assert fake.hget(NAMES.stats(kid), "laned") == "0"
