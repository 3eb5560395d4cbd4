"""No sender's text reaches the operator's terminal raw (issue 23, finding 5): each
``pd-relay`` command that prints what senders and channels wrote (dedup_keys, summaries,
sources, channel replies) is run with hostile values in Redis, and its output may hold
no control character but line breaks: no ESC, CR, BEL, C1 control or bidi override."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from relay.channels import jobs
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import put_job, rq_queue
from relay.channels.worker import ChannelWorker
from relay.names import Names
from relay.routes.config import load
from relay.settings import Settings
from tests.test_channels import Session

NAMES = Names("pdr")
HOSTILE = "x\x1b]0;pwned\x07\x1b[2J\rfake line\x9b31m\u202eevil\u2066\x00"
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def hostile(tmp_path: Path, keys: tuple[str, ...], monkeypatch: pytest.MonkeyPatch):
    """A stack's Redis holding hostile text everywhere a command reads it from."""
    from relay.app import create_app

    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n")
    (tmp_path / "routes.yml").write_text("""
channels:
  - {name: chat, type: mattermost, url: "https://chat.example/hooks/x"}
routes:
  - {name: db, keys: [db], channels: [chat]}
""")
    env = {"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
           "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml"), "RELAY_ALLOW_ANONYMOUS": "true"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(env)
    raw = fakeredis.FakeRedis()
    fake = fakeredis.FakeRedis(server=raw.connection_pool.connection_kwargs["server"],
                               decode_responses=True)

    def connect(settings: Settings, decode: bool = True, **kwargs: Any) -> Any:
        return fake if decode else raw

    for module in ("relay.channels.commands", "relay.commands.trace", "relay.queues",
                   "relay.formats",
                   "relay.commands.operations", "relay.commands.deadletters"):
        monkeypatch.setattr(f"{module}.connect", connect)
    monkeypatch.setattr("relay.cli.configure", lambda *args: None)
    event = {"event_action": "trigger", "dedup_key": HOSTILE,
             "payload": {"summary": HOSTILE, "source": HOSTILE, "severity": "critical"}}
    assert create_app(settings, client=fake).test_client().post(
        "/v2/enqueue", json=event).status_code == 202
    # the channel refuses with a hostile reply: a failed job and a last error
    routes = load(settings.routes_file, settings.key_names)
    jobs.install(jobs.Courier(fake, settings, routes, session=Session((404, {}, HOSTILE))))
    try:
        channels = {c.name: c for c in routes.channels}
        Dispatcher(fake, NAMES, settings, channels,
                   lambda c, n: put_job(raw, NAMES, c, n)).step(1)
        ChannelWorker([rq_queue(raw, NAMES, "chat")], connection=raw,
                      serializer="json").work(burst=True, logging_level="ERROR")
    finally:
        jobs.install(None)  # type: ignore[arg-type]
    return settings


COMMANDS = [["channels", "status"], ["channels", "failed"], ["channels", "failed", "chat"],
            ["trace", HOSTILE], ["queue", "show", "db"], ["status"], ["dead-letters", "list"],
            ["routes", "test", json.dumps({"event_action": "trigger", "dedup_key": HOSTILE,
                                           "payload": {"summary": HOSTILE, "source": HOSTILE,
                                                       "severity": "critical"}})]]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_no_command_prints_a_senders_control_characters(hostile, argv: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from relay.cli import main

    main(argv)
    out = capsys.readouterr().out
    assert out.strip(), "the command printed nothing: the test would prove nothing"
    assert not RAW.search(out), repr(out)


def test_the_hostile_values_are_there_to_be_printed(hostile, capsys) -> None:
    """The walk above reads hostile text: the failed job's dedup_key and reply."""
    from relay.cli import main

    main(["channels", "failed", "--json"])
    [row] = json.loads(capsys.readouterr().out)
    assert row["dedup_key"] == HOSTILE and "fake line\x9b31m\u202eevil" in row["error"], row
    main(["channels", "failed"])
    assert "\\x1b]0;pwned\\x07" in capsys.readouterr().out


def test_every_command_writes_through_the_escaping_terminal(capsys) -> None:
    from relay.cli import Terminal

    terminal = Terminal(__import__("sys").stdout)
    terminal.write(f"a\n{HOSTILE}\tb\n")
    terminal.flush()
    out = capsys.readouterr().out
    assert out.startswith("a\nx\\x1b]0;pwned") and out.endswith("\n") and not RAW.search(out)
