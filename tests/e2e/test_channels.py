"""End to end: channels beside PagerDuty, with real ingress, worker, channel-worker (RQ),
Redis and simulator processes, a webhook receiver that fails, throttles and recovers,
and a real SMTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.stack.processes import wait_until
from tests.conftest import trigger
from tests.receivers import MailServer, WebhookReceiver


@pytest.fixture
def mail() -> Iterator[MailServer]:
    server = MailServer()
    yield server
    server.close()


def alert(dedup_key: str, severity: str, summary: str = "") -> dict[str, Any]:
    return trigger(summary or f"{dedup_key} is {severity}", dedup_key=dedup_key,
                   payload={"summary": summary or f"{dedup_key} is {severity}",
                            "source": "db-1", "severity": severity})


def resolve(dedup_key: str) -> dict[str, Any]:
    return {"event_action": "resolve", "dedup_key": dedup_key}


def write_routes(path: Path, hooks: WebhookReceiver, mail: MailServer) -> Path:
    path.write_text(f"""
channels:
  - name: ops-slack
    type: slack
    url: ${{PD_RELAY_SECRET_SLACK_URL}}
    min_severity: warning
  - name: flaky
    type: webhook
    url: {hooks.url}/flaky
  - name: broken
    type: mattermost
    url: {hooks.url}/broken
  - name: mail
    type: email
    host: 127.0.0.1
    port: {mail.port}
    security: none
    sender: relay@example.org
    to: [oncall@example.org, dba@example.org]
routes:
  - name: chat-only
    match: ['source="chat"']
    channels: [ops-slack]
  - name: db
    keys: [key-1]
    channels: [ops-slack, {{name: mail, min_severity: critical}}, flaky, broken]
""")
    path.chmod(0o600)
    return path


def test_channels_hear_of_events_beside_pagerduty_and_a_flaky_one_recovers(
        make_stack, hooks: WebhookReceiver, mail: MailServer, tmp_path: Path) -> None:
    routes = write_routes(tmp_path / "routes.yml", hooks, mail)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes),
                       PD_RELAY_SECRET_SLACK_URL=hooks.url + "/slack",
                       RELAY_CHANNEL_RETRY_BASE_S="0.2", RELAY_CHANNEL_RETRY_MAX_S="1")
    # the flaky webhook fails, is throttled (Retry-After 1 s), then takes everything
    hooks.script("/flaky", (500, {}, "oops"), (503, {}, "down"),
                 (429, {"Retry-After": "1"}, "slow down"))
    hooks.script("/broken", steady=(404, {}, "no_such_hook"))
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()
    events = [alert("disk", "critical"), alert("cpu", "warning"), alert("log", "info"),
              resolve("disk")]
    for event in events:
        assert stack.post(event).status_code == 202
    chat = dict(alert("chat-1", "error"), payload={"summary": "only chat", "source": "chat",
                                                   "severity": "error"})
    reply = stack.post(chat)
    assert reply.status_code == 202 and "channels only" in reply.json()["message"]

    wait_until(lambda: len(stack.delivered()) == 4, 20, "PagerDuty to take the four events")
    assert "chat-1" not in {e["dedup_key"] for e in stack.delivered()}
    # Slack: warning and up, and the resolve of a trigger it heard of; never the info one
    slack = wait_until(lambda: (got := hooks.taken("/slack")) and len(got) == 4 and got,
                       20, "slack to hear of four events")
    lines = [body["text"].split("\n")[0] for body in slack]
    assert sorted(lines) == sorted([
        "*🔴 TRIGGERED [critical] disk is critical*", "*🟡 TRIGGERED [warning] cpu is warning*",
        "*✅ RESOLVED [critical] disk is critical*", "*🟠 TRIGGERED [error] only chat*"])
    assert "key: key-1" in slack[lines.index("*🔴 TRIGGERED [critical] disk is critical*")]["text"]
    # mail: critical only, to both recipients; the resolve of that trigger too
    wait_until(lambda: len(mail.messages) == 2, 20, "two mails")
    subjects = sorted(m["Subject"] for m in mail.messages)
    assert subjects == ["✅ RESOLVED [critical] disk is critical",
                        "🔴 TRIGGERED [critical] disk is critical"]
    assert mail.messages[0]["X-Envelope-To"] == "oncall@example.org, dba@example.org"
    # the flaky webhook: every event of the db route, after its failures
    flaky = wait_until(lambda: (got := hooks.taken("/flaky")) and len(got) == 4 and got, 30,
                       "the flaky webhook to recover and take all four")
    assert sorted(b["notice"]["dedup_key"] + ":" + b["notice"]["state"] for b in flaky) == [
        "cpu:triggered", "disk:resolved", "disk:triggered", "log:triggered"]
    assert hooks.tries("/flaky") == 4 + 3

    # a channel that refuses: no retries, its messages in RQ's failed registry with the
    # reply; once mended, requeued and taken
    gone = wait_until(lambda: (got := channel_row(stack, "broken")) and got["failed"] == 4 and got,
                      20, "the broken channel's four failures")
    assert gone["queued"] == gone["retrying"] == 0 and "HTTP 404" in gone["last_error"]
    assert hooks.tries("/broken") == 4
    listed = stack.cli("channels", "failed", "broken")
    assert listed.returncode == 0 and listed.stdout.count("no_such_hook") == 4, listed.stdout
    hooks.script("/broken", steady=(200, {}, "ok"))
    requeued = stack.cli("channels", "requeue", "--all", "--channel", "broken")
    assert requeued.returncode == 0 and "requeued 4" in requeued.stdout, requeued.stderr
    wait_until(lambda: len(hooks.taken("/broken")) == 4, 20, "the requeued messages")
    assert channel_row(stack, "broken")["failed"] == 0
    assert channel_row(stack, "ops-slack")["sent"] == 4


def channel_row(stack: Any, name: str) -> dict[str, Any]:
    result = stack.cli("channels", "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["channel"]: row for row in json.loads(result.stdout)["channels"]}
    return rows[name]  # type: ignore[no-any-return]


def test_a_hanging_channel_slows_no_page_and_a_pagerduty_outage_no_channel(
        make_stack, hooks: WebhookReceiver, tmp_path: Path) -> None:
    """The channel that never answers (each send waits out its timeout) and PagerDuty
    answering 500 to everything: each side's messages still arrive."""
    import socket

    hanging = socket.socket()  # accepts connections and never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: stuck
    type: webhook
    url: http://127.0.0.1:{hanging.getsockname()[1]}/never
    timeout_s: 3
  - name: chat
    type: slack
    url: {hooks.url}/slack
    per_minute: 600
routes:
  - name: all
    keys: [key-1]
    channels: [stuck, chat]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()
    try:
        for n in range(20):
            assert stack.post(alert(f"page-{n}", "critical")).status_code == 202
        wait_until(lambda: len(stack.delivered()) == 20, 30, "PagerDuty to take all 20")
        assert channel_row(stack, "stuck")["sent"] == 0  # still waiting on its first sends
        # now PagerDuty fails everything: the chat channel hears of new events all the same
        stack.sim_config(fail_rate=1.0, fail_status=500)
        for n in range(5):
            assert stack.post(alert(f"outage-{n}", "error")).status_code == 202
        wait_until(lambda: sum(b["text"].count("outage-") > 0 for b in hooks.taken("/slack"))
                   == 5, 60, "chat to hear of the events PagerDuty refuses")
        assert len(stack.delivered()) == 20
    finally:
        hanging.close()


def test_send_test_reports_each_channel(make_stack, hooks: WebhookReceiver, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - {{name: good, type: slack, url: "{hooks.url}/good"}}
  - {{name: bad, type: teams, url: "{hooks.url}/bad"}}
""")
    hooks.script("/bad", steady=(403, {}, "workflow disabled"))
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    alone = stack.cli("send-test", "--channel", "good", "--timeout", "2")
    assert alone.returncode == 1 and "is `pd-relay channel-worker` running?" in alone.stdout
    stack.start_channel_worker()
    result = stack.cli("send-test", "--all-channels", "--timeout", "20")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "good: sent: ok" in result.stdout
    assert "bad: FAILED: relay.errors.Rejected: HTTP 403: workflow disabled" in result.stdout
    text = hooks.taken("/good")[-1]["text"]
    assert text.startswith("*🔵 [test] TRIGGERED [info] pd-relay send-test from")
