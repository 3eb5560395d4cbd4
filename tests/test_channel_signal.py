"""The signal type runs signal-cli: here a stand-in executable the test writes (tests/
standins.py's FAKE_SIGNAL_CLI) that checks its arguments as signal-cli documents them,
reads the message from standard input and answers with an exit code and JSON. Also:
who has a message is remembered in the RQ job (``progress``), so a retry, of signal or
sms, sends only to the rest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import requests
from rq.job import Job

from relay.channels import messages, senders
from relay.channels.senders import progress
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel
from tests import standins
from tests.test_channel_types import (
    EVIL,
    TWILIO_SID,
    TWILIO_TOKEN,
    notice,
    stand_ins,  # noqa: F401 - a fixture
    start,
)

ACCOUNT = "+4915112345678"
TO = ("+4915187654321", "+4915100000002", "group:aGVsbG8gd29ybGQgZ3JvdXAxMjM=")


class Fake:
    def __init__(self, root: Path) -> None:
        self.log, self.plan = root / "calls.jsonl", root / "plan.json"
        self.path = root / "signal-cli"
        self.path.write_text(standins.FAKE_SIGNAL_CLI.format(
            python=sys.executable, log=str(self.log), script=str(self.plan), account=ACCOUNT))
        self.path.chmod(0o700)

    def answers(self, *answers: dict[str, Any], steady: dict[str, Any] | None = None) -> None:
        self.plan.write_text(json.dumps({"answers": list(answers),
                                         "steady": steady or {"code": 0}}))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def channel(fake: Fake, **extra: Any) -> Channel:
    return Channel("sig", "signal", account=ACCOUNT, to=TO, command=str(fake.path),
                   **{"timeout_s": 20, **extra})


def send(found: Channel, text: str = "disk full") -> str:
    return senders.send(found, messages.message(found, notice(text)), requests.Session())


def test_signal_cli_gets_argv_and_the_message_on_stdin_never_a_shell(
        fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_RELAY_SECRET_SLACK", "xoxb-secret")
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://:secret@127.0.0.1:6379")
    found = channel(fake)
    assert send(found, EVIL + "; $(touch pwned) `id` | rm -rf ~") == "sent"
    call = fake.calls()[0]
    assert call["argv"] == ["-o", "json", "-a", ACCOUNT, "send", "--message-from-stdin",
                            TO[0], TO[1], "-g", "aGVsbG8gd29ybGQgZ3JvdXAxMjM="]
    assert call["text"].startswith("CRIT disk <b>full</b> & @everyone")  # plain text
    assert "$(touch pwned)" in call["text"] and not Path("pwned").exists()
    assert not any(arg for arg in call["argv"] if "disk" in arg)  # not in `ps`
    assert not [name for name in call["env"] if name.startswith(("RELAY_", "PD_RELAY_"))]


@pytest.mark.parametrize(("answer", "outcome", "said"), [
    ({"code": 3, "stderr": "IO error: connection reset"}, RetryLater, "server or IO error"),
    ({"code": 2}, RetryLater, "unexpected error"),
    ({"code": 5, "types": {TO[0]: "RATE_LIMIT_FAILURE"}}, RetryLater, "rate limited"),
    ({"code": 4, "types": {TO[0]: "IDENTITY_FAILURE"}}, Rejected, "untrusted key"),
    ({"code": 6}, Rejected, "CAPTCHA rejected"),
    ({"code": 1, "types": {TO[0]: "NETWORK_FAILURE", TO[1]: "NETWORK_FAILURE"}}, RetryLater,
     "network failure"),
    ({"code": 1, "stderr": f"User {ACCOUNT} is not registered."}, Rejected, "user error"),
])
def test_signal_cli_exit_codes_map_to_outcomes(fake: Fake, answer: dict[str, Any],
                                               outcome: type[Exception], said: str) -> None:
    fake.answers(answer)
    with pytest.raises(outcome) as raised:
        send(channel(fake))
    assert said in str(raised.value) or said in getattr(raised.value, "reason", "")
    assert ACCOUNT not in str(raised.value) + raised.value.reply  # type: ignore[attr-defined]
    if answer["code"] == 5:
        assert raised.value.retry_after == 9  # type: ignore[attr-defined]


def test_signal_cli_missing_or_hanging(fake: Fake, tmp_path: Path) -> None:
    with pytest.raises(Rejected, match="could not run: FileNotFoundError"):
        send(Channel("sig", "signal", account=ACCOUNT, to=TO,
                     command=str(tmp_path / "no-such-signal-cli")))
    fake.answers({"code": 0, "sleep": 60})
    with pytest.raises(RetryLater, match="no answer within 0.5 s"):
        send(channel(fake, **{"timeout_s": 0.5}))


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> Job:
    """The RQ job a sender runs in (its meta kept in Redis, as the worker's is)."""
    connection = fakeredis.FakeRedis()
    made = Job.create(print, connection=connection, serializer="json")
    made.save()
    monkeypatch.setattr(progress, "get_current_job", lambda: Job.fetch(
        made.id, connection=connection, serializer="json"))
    return made


def test_a_retry_sends_only_to_those_still_without_the_message(fake: Fake, job: Job) -> None:
    found = channel(fake)
    fake.answers({"code": 0, "types": {TO[1]: "NETWORK_FAILURE"}})
    with pytest.raises(RetryLater, match="1 recipient"):
        send(found)
    assert send(found) == "sent"
    assert [call["argv"][6:] for call in fake.calls()] == [
        [TO[0], TO[1], "-g", TO[2].removeprefix("group:")], [TO[1]]]
    assert send(found) == "sent before to all 3 recipient(s)"
    assert len(fake.calls()) == 2


def test_an_unregistered_recipient_is_told_not_retried(fake: Fake) -> None:
    fake.answers({"code": 0, "types": {TO[1]: "UNREGISTERED_FAILURE"}})
    assert send(channel(fake)) == "sent; 2 SUCCESS, 1 UNREGISTERED_FAILURE"  # (the group
    # counts as one: the stand-in answers for it as one member)


def test_sms_retries_only_the_recipients_left(stand_ins, job: Job) -> None:  # noqa: F811
    server = start(stand_ins, standins.twilio(TWILIO_SID, TWILIO_TOKEN))
    to = ("+15550000001", "+15550000002", "+15550000003")
    sms = Channel("s", "sms", url=server.url, account=TWILIO_SID, token=TWILIO_TOKEN,
                  service="MG" + "0" * 32, to=to)
    body = messages.message(sms, notice())
    original = server.check
    answers = iter([original, lambda r: (original(r), standins.TWILIO_429)[1]])
    server.check = lambda r: next(answers, original)(r)  # the second request: a 429
    with pytest.raises(RetryLater, match="2 recipient"):
        senders.send(sms, body, requests.Session())
    assert senders.send(sms, body, requests.Session()) == "sent to 2 recipient(s) (1 had it " \
        "before)"
    assert [r.form()["To"] for r in server.taken()] == [to[0], to[1], to[2]]
    assert all(r.form()["MessagingServiceSid"] == "MG" + "0" * 32 for r in server.taken())
    assert server.statuses() == [201, 429, 201, 201]
