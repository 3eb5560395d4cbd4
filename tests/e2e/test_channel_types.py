"""End to end: the channel types of issue 30 with real ingress, worker, channel-worker
(RQ), Redis and simulator processes, each sending to a stand-in of its provider
(tests/standins.py; signal: a fake signal-cli); then ``pd-relay send-test --channel``
for each; no secret in any process's log."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.stack.processes import wait_until
from tests import standins
from tests.conftest import trigger
from tests.standins import StandIn
from tests.test_channel_types import (
    APP_TOKEN,
    BOT_TOKEN,
    HOOK_ID,
    HOOK_TOKEN,
    NTFY_TOKEN,
    NTFY_TOPIC,
    SECRETS,
    TWILIO_SID,
    TWILIO_TOKEN,
    USER_KEY,
)

ACCOUNT = "+4915112345678"


@pytest.fixture
def providers() -> Iterator[dict[str, StandIn]]:
    made = {"discord": StandIn(standins.discord(HOOK_ID, HOOK_TOKEN)),
            "telegram": StandIn(standins.telegram(BOT_TOKEN)),
            "pushover": StandIn(standins.pushover(APP_TOKEN, USER_KEY)),
            "ntfy": StandIn(standins.ntfy(NTFY_TOPIC, NTFY_TOKEN)),
            "sms": StandIn(standins.twilio(TWILIO_SID, TWILIO_TOKEN))}
    yield made
    for stand_in in made.values():
        stand_in.close()


def test_the_new_types_hear_of_events_and_send_test_reaches_each(
        make_stack, providers: dict[str, StandIn], tmp_path: Path) -> None:
    signal_log = tmp_path / "signal-calls.jsonl"
    fake = tmp_path / "signal-cli"
    fake.write_text(standins.FAKE_SIGNAL_CLI.format(
        python=sys.executable, log=str(signal_log), script=str(tmp_path / "plan.json"),
        account=ACCOUNT))
    fake.chmod(0o700)
    p = providers
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: discord
    type: discord
    url: ${{PD_RELAY_SECRET_DISCORD_URL}}
  - name: telegram
    type: telegram
    url: {p["telegram"].url}
    token: ${{PD_RELAY_SECRET_BOT_TOKEN}}
    chat: -1001234567890
  - name: pushover
    type: pushover
    url: {p["pushover"].url}/1/messages.json
    token: ${{PD_RELAY_SECRET_PUSHOVER_TOKEN}}
    user: ${{PD_RELAY_SECRET_PUSHOVER_USER}}
  - name: ntfy
    type: ntfy
    url: {p["ntfy"].url}/${{PD_RELAY_SECRET_NTFY_TOPIC}}
    token: ${{PD_RELAY_SECRET_NTFY_TOKEN}}
  - name: sms
    type: sms
    url: {p["sms"].url}
    account: ${{PD_RELAY_SECRET_TWILIO_SID}}
    token: ${{PD_RELAY_SECRET_TWILIO_TOKEN}}
    sender: "+15557654321"
    to: ["+15550000001", "+15550000002"]
    min_severity: critical
  - name: signal
    type: signal
    account: "{ACCOUNT}"
    to: ["+4915187654321"]
    command: {fake}
routes:
  - name: db
    keys: [key-1]
    channels: [discord, telegram, pushover, ntfy, sms, signal]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes),
                       PD_RELAY_SECRET_DISCORD_URL=(f"{p['discord'].url}/api/webhooks/"
                                                    f"{HOOK_ID}/{HOOK_TOKEN}"),
                       PD_RELAY_SECRET_BOT_TOKEN=BOT_TOKEN,
                       PD_RELAY_SECRET_PUSHOVER_TOKEN=APP_TOKEN,
                       PD_RELAY_SECRET_PUSHOVER_USER=USER_KEY,
                       PD_RELAY_SECRET_NTFY_TOPIC=NTFY_TOPIC,
                       PD_RELAY_SECRET_NTFY_TOKEN=NTFY_TOKEN,
                       PD_RELAY_SECRET_TWILIO_SID=TWILIO_SID,
                       PD_RELAY_SECRET_TWILIO_TOKEN=TWILIO_TOKEN,
                       RELAY_CHANNEL_RETRY_BASE_S="0.2", RELAY_CHANNEL_RETRY_MAX_S="1")
    p["discord"].script((500, {}, {"message": "oops"}))  # fails once, then takes it
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()
    event = trigger("disk full", dedup_key="disk-db1",
                    payload={"summary": "disk full", "source": "db1", "severity": "critical"})
    assert stack.post(event).status_code == 202
    assert stack.post({"event_action": "resolve", "dedup_key": "disk-db1"}).status_code == 202
    for name, stand_in in p.items():
        wait = {"sms": 4, "pushover": 3}.get(name, 2)  # sms: a request a recipient;
        # pushover: the resolve first cancels the critical's emergency repeats
        wait_until(lambda s=stand_in, n=wait: len(s.taken()) == n, 30,
                   f"{name} to take the trigger and its resolve")
    wait_until(lambda: signal_log.exists() and len(signal_log.read_text().splitlines()) == 2,
               60, "signal-cli to be run for the trigger and the resolve")
    assert p["discord"].statuses()[0] == 500
    assert sorted(r.form()["Body"] for r in p["sms"].taken()) == [
        "CRIT disk full [resolved]", "CRIT disk full [resolved]",
        "CRIT disk full on db1", "CRIT disk full on db1"]  # (a resolve has
    # its trigger's severity and summary, not its source)
    pushed = [r.form() for r in p["pushover"].taken()]
    assert [form.get("priority") for form in pushed] == ["2", None, "-1"]  # None: the cancel
    assert sorted(r.json()["priority"] for r in p["ntfy"].taken()) == [2, 5]
    texts = [json.loads(line)["text"] for line in signal_log.read_text().splitlines()]
    assert sorted(text.split("\n")[0] for text in texts) == [
        "CRIT disk full [resolved]", "CRIT disk full on db1"]

    for name in ("discord", "telegram", "pushover", "ntfy", "sms", "signal"):
        result = stack.cli("send-test", "--channel", name, "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{name}: sent" in result.stdout
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr
    for name in ("discord", "telegram", "pushover", "ntfy"):
        assert len(p[name].taken()) == 3 + (name == "pushover")
    last = p["ntfy"].taken()[-1].json()
    assert last["title"].startswith("[test] INFO pd-relay send-test from") and \
        last["tags"] == ["information_source", "test"]
    logs = stack.logs_text()
    for secret in SECRETS:
        assert secret not in logs
