"""Review of the issue 30 senders (sms, signal): who has a message, as remembered in the
RQ job (``progress``), must be who really has it, whatever the provider answered."""

from __future__ import annotations

import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path

import pytest
import requests
from rq.job import Job

from relay.channels import messages, senders
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel
from tests import standins
from tests.test_channel_signal import job  # noqa: F401 - a fixture
from tests.test_channel_types import (
    TWILIO_SID,
    TWILIO_TOKEN,
    notice,
    stand_ins,  # noqa: F401 - a fixture
    start,
)

TO = ("+15550000001", "+15550000002", "+15550000003")


def test_sms_refused_for_everyone_is_sent_to_everyone_when_requeued(
        stand_ins, job: Job) -> None:  # noqa: F811
    """Twilio refusing every recipient (here the token was wrong: 401, code 20003) sends
    the message to nobody: it fails, and once the token is right, `channels requeue`
    runs the same job (its meta kept) and must send it to all three."""
    server = start(stand_ins, standins.twilio(TWILIO_SID, TWILIO_TOKEN))
    sms = Channel("s", "sms", url=server.url, account=TWILIO_SID, token="wrong-token",
                  service="MG" + "0" * 32, to=TO)
    body = messages.message(sms, notice())
    with pytest.raises(Rejected, match="refused every recipient"):
        senders.send(sms, body, requests.Session())
    fixed = Channel("s", "sms", url=server.url, account=TWILIO_SID, token=TWILIO_TOKEN,
                    service="MG" + "0" * 32, to=TO)
    assert senders.send(fixed, body, requests.Session()) == "sent to 3 recipient(s)"
    assert [r.form()["To"] for r in server.taken() if r.basic()[1] == TWILIO_TOKEN] == \
        list(TO)


ACCOUNT = "+4915112345678"
FRIEND = "+4915187654321"
UUID = "3f1c2a7e-9b4d-4e1a-8c2f-0d9e8b7a6c5d"
# signal-cli's JSON output names a recipient by all it knows of it (JsonRecipientAddress:
# uuid, number, username), whichever way the command line named it
SIGNAL_CLI = r'''#!{python}
import json, sys
sys.stdin.read()
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
calls = sum(1 for _ in open({log!r}))
results = []
for who in sys.argv[7:]:
    address = ({{"uuid": {uuid!r}, "number": "+4915100000009", "username": None}}
               if who == {uuid!r} else {{"uuid": None, "number": who, "username": None}})
    failed = who == {uuid!r} and calls == 1  # the first time: a network failure
    results.append({{"recipientAddress": address,
                     "type": "NETWORK_FAILURE" if failed else "SUCCESS"}})
print(json.dumps({{"timestamp": 1700000000000, "results": results}}))
sys.exit(0)
'''


def test_signal_a_recipient_named_by_uuid_that_failed_is_tried_again(
        tmp_path: Path, job: Job) -> None:  # noqa: F811
    """One recipient had it, the other (named by its UUID, which signal-cli answers with
    its number too) failed for the network: exit 0, and that one must be tried again,
    not remembered as having it."""
    log = tmp_path / "calls.jsonl"
    command = tmp_path / "signal-cli"
    command.write_text(SIGNAL_CLI.format(python=sys.executable, log=str(log), uuid=UUID))
    command.chmod(0o700)
    found = Channel("sig", "signal", account=ACCOUNT, to=(FRIEND, UUID), command=str(command),
                    timeout_s=20)
    body = messages.message(found, notice())
    with pytest.raises(RetryLater, match="1 recipient"):
        senders.send(found, body, requests.Session())
    assert senders.send(found, body, requests.Session()) == "sent"
    assert [json.loads(line)[6:] for line in log.read_text().splitlines()] == [
        [FRIEND, UUID], [UUID]]


NOISY = r'''#!{python}
import json, sys
sys.stdin.read()
line = b"INFO  some JVM log line of signal-cli, again and again\n"
sys.stderr.buffer.write(line * (40_000_000 // len(line)))  # about 40 MB
print(json.dumps({{"timestamp": 1, "results": [
    {{"recipientAddress": {{"number": {friend!r}}}, "type": "SUCCESS"}}]}}))
'''


def test_signal_cli_output_is_read_within_a_bound(tmp_path: Path) -> None:
    """signal-cli writing 40 MB (a log gone wild) costs the channel worker a bounded
    amount of memory, not all of it (it was read whole: communicate)."""
    command = tmp_path / "signal-cli"
    command.write_text(NOISY.format(python=sys.executable, friend=FRIEND))
    command.chmod(0o700)
    found = Channel("sig", "signal", account=ACCOUNT, to=(FRIEND,), command=str(command),
                    timeout_s=60)
    body = messages.message(found, notice())
    tracemalloc.start()
    try:
        assert senders.send(found, body, requests.Session()) == "sent"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, peak


LEAVING = r'''#!{python}
import subprocess, sys
sys.stdin.read()
child = subprocess.Popen(["sleep", "20"], start_new_session=True, stdout=sys.stdout)
open({pid!r}, "w").write(str(child.pid))
'''


def test_signal_cli_leaving_a_child_holding_its_output_costs_its_timeout_only(
        tmp_path: Path) -> None:
    """A signal-cli that leaves a process of another session holding its output open:
    the send ends at its timeout (a retry), while that process still runs, not when it
    ends (the process group killed, the output was read to its end)."""
    command, pid = tmp_path / "signal-cli", tmp_path / "child.pid"
    command.write_text(LEAVING.format(python=sys.executable, pid=str(pid)))
    command.chmod(0o700)
    found = Channel("sig", "signal", account=ACCOUNT, to=(FRIEND,), command=str(command),
                    timeout_s=1)
    try:
        with pytest.raises(RetryLater, match="no answer within 1 s"):
            senders.send(found, messages.message(found, notice()), requests.Session())
        child = int(pid.read_text())
        state = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()[0]
        assert state != "Z"  # still running (not a zombie): not waited for
    finally:
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except OSError:
                pass


TWILIO_QUEUE_FULL: standins.Answer = (400, {}, {
    "code": 21611, "status": 400, "more_info": "https://www.twilio.com/docs/errors/21611",
    "message": "This 'From' number has exceeded the maximum number of queued messages"})


def test_sms_a_full_twilio_queue_is_tried_again_not_refused(
        stand_ins, job: Job) -> None:  # noqa: F811
    """Twilio's 21611 (a 400: the From number's queue is full, for now) says nothing of
    the recipient: the message must reach them on a retry, not be taken as refused."""
    server = start(stand_ins, standins.twilio(TWILIO_SID, TWILIO_TOKEN))
    sms = Channel("s", "sms", url=server.url, account=TWILIO_SID, token=TWILIO_TOKEN,
                  sender="+15559990000", to=TO)
    body = messages.message(sms, notice())
    original = server.check
    answers = iter([lambda r: (original(r), TWILIO_QUEUE_FULL)[1]])
    server.check = lambda r: next(answers, original)(r)  # the first request: queue full
    with pytest.raises(RetryLater, match="21611"):
        senders.send(sms, body, requests.Session())
    assert senders.send(sms, body, requests.Session()) == "sent to 3 recipient(s)"
    assert [r.form()["To"] for r in server.taken()] == list(TO)
    assert server.statuses() == [400, 201, 201, 201]


def test_signal_rate_limited_pauses_the_channel_as_a_providers_429_does(
        fake, tmp_path: Path) -> None:
    """signal-cli's rate limit (exit 5, retryAfterSeconds 9) is Signal saying "later", as
    a 429 with retry_after from Telegram or Discord: the channel pauses that long (its
    breaker counts no failure), rather than a failure that, repeated, opens the breaker
    (and the pause was the retry backoff's, not Signal's)."""
    from rq import Retry

    from relay.routes.channels import Breaker
    from tests.test_channel_breaker import Clock
    from tests.test_channel_breaker_courier import NAMES, Parked, courier
    from tests.test_channel_signal import Fake
    from tests.test_channels import NOTICE, Session

    stand_in = Fake(tmp_path)
    stand_in.answers({"code": 5, "types": {FRIEND: "RATE_LIMIT_FAILURE"}})
    sig = Channel("sig", "signal", account=ACCOUNT, to=(FRIEND,), command=str(stand_in.path),
                  timeout_s=20, breaker=Breaker(failures=1, ratio=0, cooldown_s=300))
    result = courier(fake, Session(), Clock(), Parked(), sig).deliver("sig", NOTICE, 0)
    assert isinstance(result, Retry)  # not "held: breaker open"
    assert 8_000 < fake.pttl(NAMES.channel_pause("sig")) <= 9_000


def test_a_bot_token_urllib3_logs_in_a_url_is_scrubbed(fake) -> None:
    """An answer whose headers urllib3 cannot parse makes it log a WARNING naming the
    request's whole URL: for Telegram, the bot token is in its path. The channel worker's
    logs scrub its channels' secrets as they scrub routing keys (promise 6)."""
    import io
    import logging
    import socket
    import threading

    from relay.channels.jobs import Courier
    from relay.logs import KeyScrubber
    from relay.routes.config import RoutesFile
    from relay.settings import Settings
    from tests.test_channel_breaker_courier import Parked
    from tests.test_channels import NOTICE

    server = socket.create_server(("127.0.0.1", 0))
    body = b'{"ok": true, "result": {"message_id": 17}}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n: no name\r\n\r\n" + body)

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    token = "123456789:AAHsecretBOTtokenVALUE0123456789abc"
    bot = Channel("t", "telegram", url=f"http://127.0.0.1:{server.getsockname()[1]}",
                  token=token, chat="1", retries=0)
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(KeyScrubber(()))
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    root.handlers[:], root.level = [handler], logging.INFO
    try:
        sender = Courier(fake, Settings(), RoutesFile(channels=(bot,)),
                         sleep=lambda s: None, gatherings=Parked())
        assert sender.deliver("t", NOTICE, 0) == "sent: message 17"
    finally:
        root.handlers[:], root.level = kept
        server.close()
    assert "Failed to parse headers" in written.getvalue()  # urllib3 said it
    assert "secretBOTtoken" not in written.getvalue()
