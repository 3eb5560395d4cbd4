"""Channels without processes: the routes file's channels section, what the ingress puts
in the outbox (through the Flask app on fakeredis: ENQUEUE's Lua), the dispatcher, the
courier's outcomes with a scripted HTTP session, and each type's message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import requests
from rq import Retry

from relay.app import create_app
from relay.channels import messages
from relay.channels.jobs import Courier
from relay.channels.notice import Entry, Notice
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import job_id, put_job, rq_queue
from relay.errors import ConfigError, Rejected
from relay.keys import key_id
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import load
from relay.settings import Settings
from tests.conftest import UNIX, trigger

NAMES = Names("pdr")
ROUTES = """
channels:
  - name: chat
    type: slack
    url: ${PD_RELAY_SECRET_CHAT_URL}
    min_severity: warning
  - name: hook
    type: webhook
    url: https://hooks.example.org/in
  - name: mail
    type: email
    host: smtp.example.org
    sender: relay@example.org
    to: oncall@example.org
sources:
  - name: am
    api_keys: ["sha256:%s"]
    channels: [{name: mail, min_severity: error}]
routes:
  - name: chat-only
    match: ['source="chat"']
    channels: [chat]
  - name: db
    keys: [db]
    channels: [chat, {name: hook, min_severity: critical}]
"""


def alert(dedup_key: str, severity: str, source: str = "db-1") -> dict[str, Any]:
    return trigger(f"{dedup_key} {severity}", dedup_key=dedup_key,
                   payload={"summary": f"{dedup_key} {severity}", "source": source,
                            "severity": severity})


@pytest.fixture
def routed(tmp_path: Path, keys: tuple[str, ...], fake, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PD_RELAY_SECRET_CHAT_URL", "https://hooks.slack.example/T000/B000/secret")
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n{keys[1]} other\n")
    (tmp_path / "routes.yml").write_text(ROUTES % ("0" * 64))
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                  "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml"),
                                  "RELAY_ALLOW_ANONYMOUS": "true"})
    return create_app(settings, client=fake).test_client(), settings


def outbox(fake) -> list[Entry]:
    return [Entry.parse(raw) for raw in fake.lrange(NAMES.outbox, 0, -1)]


def test_the_channels_section_names_every_problem_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "routes.yml"
    path.write_text("""
channels:
  - name: a
    type: pager
  - name: b
    type: slack
  - name: c
    type: webhook
    url: ${PD_RELAY_SECRET_NOT_SET_ANYWHERE}
    template: "{{ unclosed"
  - name: d
    type: email
    host: smtp.example.org
    sender: nobody
    to: []
    security: ssl
routes:
  - name: r
    keys: [db]
    channels: [nope, {name: b, min_severity: loud}]
  - name: s
    drop: true
    channels: [b]
""")
    with pytest.raises(ConfigError) as caught:
        load(path, ["db"])
    problems = "\n".join(caught.value.problems)
    for expected in ("channels[0].type: want one of slack", "channels[1].url: a slack "
                     "channel needs it", "channels[2].url: the environment variable "
                     "PD_RELAY_SECRET_NOT_SET_ANYWHERE is not set",
                     "channels[2].template: not a Jinja2",
                     "channels[3].sender: want an email address", "channels[3].to: want one",
                     "channels[3].security: want one of starttls", "routes[0].channels[0]: no "
                     "channel named 'nope'", "routes[0].channels[1].min_severity",
                     "routes[1]: a route either drops"):
        assert expected in problems, problems


def test_secrets_from_the_environment_never_show(routed) -> None:
    _, settings = routed
    chat = load(settings.routes_file, settings.key_names).channels[0]
    assert chat.url.endswith("/secret")
    assert "secret" not in repr(chat) and "secret" not in chat.shown


def test_the_outbox_gets_the_channels_each_event_reaches(routed, fake) -> None:
    client, _ = routed
    for event in (alert("a", "critical"), alert("b", "warning"), alert("c", "info"),
                  alert("d", "error", source="chat"), {"event_action": "resolve",
                                                       "dedup_key": "a"}):
        assert client.post("/v2/enqueue", json=event).status_code == 202
    found = {(e.record.event["dedup_key"], e.action): (e.header["c"], e.slot, e.header["r"])
             for e in outbox(fake)}
    assert found == {
        ("a", "trigger"): (["chat", "hook"], 1, "db"),
        ("b", "trigger"): (["chat"], 1, "db"),
        ("d", "trigger"): (["chat"], 0, "chat-only"),  # channels only: no PagerDuty key
        ("a", "resolve"): (None, 1, "default"),  # goes where its trigger went
    }  # c (info) reaches no channel of its route: no notice
    assert fake.llen(NAMES.queue(key_id(routed[1].routing_keys[0]))) == 4  # not d


def test_an_event_naming_its_key_keeps_it_and_still_hears_the_routes_channels(
        routed, fake) -> None:
    client, settings = routed
    event = dict(alert("k", "critical"), routing_key=settings.routing_keys[1])  # "other"
    assert client.post("/v2/enqueue", json=event).status_code == 202
    [entry] = outbox(fake)
    assert entry.slot == 2 and entry.header["c"] == ["chat", "hook"]
    assert entry.header["r"] == "routing-key" and "routing_key" not in entry.record.event


def test_a_source_adds_its_channels_at_its_own_severity(routed, fake, monkeypatch) -> None:
    from relay import auth

    client, _ = routed
    monkeypatch.setattr(auth, "digest", lambda token: "sha256:" + "0" * 64)
    for event in (alert("e", "error"), alert("w", "warning")):
        reply = client.post("/v2/enqueue", json=event, headers={"X-API-Key": "pdr_x"})
        assert reply.status_code == 202
    assert [e.header["c"] for e in outbox(fake)] == [["chat", "mail"], ["chat"]]


def test_a_full_outbox_skips_notices_and_never_refuses_the_page(routed, fake, tmp_path) -> None:
    _, settings = routed
    from dataclasses import replace

    small = create_app(replace(settings, outbox_max_mb=400 / 2**20), client=fake).test_client()
    for n in range(3):  # an entry is about 300 bytes: one fits
        assert small.post("/v2/enqueue", json=alert(f"x{n}", "critical")).status_code == 202
    assert fake.llen(NAMES.queue(key_id(settings.routing_keys[0]))) == 3
    assert fake.llen(NAMES.outbox) == 1 and fake.hget(NAMES.channel_stats, "skipped") == "2"
    kept = fake.lindex(NAMES.outbox, 0).encode()
    assert int(fake.hget(NAMES.channel_stats, "bytes")) == len(kept)


CHANNELS = {"chat": Channel("chat", "slack", url="https://x"),
            "hook": Channel("hook", "webhook", url="https://y")}


def test_the_dispatcher_makes_jobs_and_follow_ups_go_where_the_trigger_went(
        routed, fake) -> None:
    client, settings = routed
    made: list[tuple[str, Notice]] = []
    dispatcher = Dispatcher(fake, NAMES, settings, CHANNELS,
                            lambda channel, notice: made.append((channel.name, notice)) or True)
    for event in (alert("a", "warning"), alert("a", "critical"),
                  {"event_action": "acknowledge", "dedup_key": "a"},
                  {"event_action": "resolve", "dedup_key": "a"},
                  {"event_action": "resolve", "dedup_key": "never-heard"}):
        client.post("/v2/enqueue", json=event)
    while dispatcher.step(1):
        pass
    assert [(name, n.action, n.severity) for name, n in made] == [
        ("chat", "trigger", "warning"),
        ("chat", "trigger", "critical"), ("hook", "trigger", "critical"),
        ("chat", "acknowledge", "critical"), ("hook", "acknowledge", "critical"),
        ("chat", "resolve", "critical"), ("hook", "resolve", "critical")]
    assert made[-1][1].key == "db" and made[-1][1].summary == "a critical"
    assert fake.llen(NAMES.outbox) == fake.llen(NAMES.outbox_taken) == 0
    assert fake.hget(NAMES.channel_stats, "bytes") == "0"
    assert not fake.keys("pdr:heard:*")  # the resolve forgot the incident


def test_a_crash_between_job_and_forget_makes_no_second_job(routed) -> None:
    client, settings = routed
    jobs = fakeredis.FakeRedis()  # RQ wants bytes
    fake = fakeredis.FakeRedis(server=jobs.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    app = create_app(settings, client=fake).test_client()
    app.post("/v2/enqueue", json=alert("a", "critical"))
    puts: list[bool] = []

    def put(channel: Channel, notice: Notice) -> bool:
        puts.append(put_job(jobs, NAMES, channel, notice))
        return puts[-1]

    dispatcher = Dispatcher(fake, NAMES, settings, CHANNELS, put)
    raw = fake.lmove(NAMES.outbox, NAMES.outbox_taken, "LEFT", "RIGHT")
    dispatcher.send(Entry.parse(raw))  # the jobs are made, then the dispatcher dies
    assert dispatcher.recover() == 1  # the next one makes them again...
    assert puts == [True, True, False, False]  # ...and RQ refuses both copies
    assert rq_queue(jobs, NAMES, "chat").count == rq_queue(jobs, NAMES, "hook").count == 1
    notice = Entry.parse(raw).header["id"]
    assert rq_queue(jobs, NAMES, "chat").get_job_ids() == [job_id(notice, "chat")]


class Session(requests.Session):
    """Answers each request from a script; keeps what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, str], str]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append({"method": method, "url": url, **kwargs})
        status, headers, text = self.answers.pop(0)
        response = requests.Response()
        response.status_code, response._content = status, text.encode()
        response.headers.update(headers)
        return response


def courier(fake, session: Session, channel: Channel, slept: list[float]) -> Courier:
    from relay.routes.config import RoutesFile

    return Courier(fake, Settings(channel_retry_base_s=10, channel_retry_max_s=100),
                   RoutesFile(channels=(channel,)), session=session, sleep=slept.append,
                   jitter=lambda: 1.0)


NOTICE = Notice("n1", "trigger", alert("a", "critical"), key="db", severity="critical",
                summary="a critical").to_json()


def test_the_courier_sends_retries_with_growing_waits_and_honours_retry_after(fake) -> None:
    session = Session((500, {}, "down"), (500, {}, "down"), (429, {"Retry-After": "30"}, "slow"),
                      (200, {}, "ok"))
    slept: list[float] = []
    hook = Channel("hook", "webhook", url="https://h.example/x", retries=5)
    sender = courier(fake, session, hook, slept)
    first, second = sender.deliver("hook", NOTICE, 0), sender.deliver("hook", NOTICE, 1)
    assert isinstance(first, Retry) and isinstance(second, Retry)
    assert (first.intervals, second.intervals) == ([10], [20])  # jitter pinned at its top
    third = sender.deliver("hook", NOTICE, 2)
    assert isinstance(third, Retry) and third.intervals == [40]
    assert 29_000 < fake.pttl(NAMES.channel_pause("hook")) <= 30_000  # Retry-After: a pause
    assert fake.hget(NAMES.channel_throttle("hook"), "limit") is None  # the pause obeys it:
    # the pace is not cut as well (tests/test_channel_429.py)
    waiting = sender.deliver("hook", NOTICE, 3)  # paused: no send, back to RQ: its backoff
    assert isinstance(waiting, Retry) and waiting.intervals == [80]
    assert sender.deliver("hook", NOTICE, 0).intervals == [30]  # or the pause, if longer
    assert len(session.sent) == 3
    fake.delete(NAMES.channel_pause("hook"))
    assert sender.deliver("hook", NOTICE, 3) == "ok"
    assert fake.hget(NAMES.channel_stats, "hook:sent") == "1"
    assert "HTTP 429" in fake.hget(NAMES.channel_stats, "hook:error")


def test_a_channel_that_does_not_answer_is_paused_so_queued_messages_skip_the_wait(
        fake) -> None:
    hook = Channel("hook", "webhook", url="https://h.example/x")
    session = Session()
    session.request = lambda *a, **k: (_ for _ in ()).throw(requests.ConnectTimeout())
    sender = courier(fake, session, hook, [])
    assert isinstance(sender.deliver("hook", NOTICE, 0), Retry)
    assert 9_000 < fake.pttl(NAMES.channel_pause("hook")) <= 10_000  # the first backoff
    assert "timeout" in fake.hget(NAMES.channel_stats, "hook:error")


def test_a_refusal_or_the_last_retry_fails_with_the_reply(fake) -> None:
    hook = Channel("hook", "webhook", url="https://h.example/x", retries=2)
    sender = courier(fake, Session((404, {}, "no_such_hook"), (503, {}, "still down")), hook, [])
    with pytest.raises(Rejected, match="HTTP 404: no_such_hook"):
        sender.deliver("hook", NOTICE, 0)
    with pytest.raises(Rejected, match="HTTP 503 after 2 retries: still down"):
        sender.deliver("hook", NOTICE, 2)
    assert fake.hget(NAMES.channel_stats, "hook:failed") == "2"


def test_the_channels_pace_is_kept_short_waits_slept_long_ones_handed_back(fake) -> None:
    slept: list[float] = []
    hook = Channel("hook", "webhook", url="https://h.example/x", per_minute=2)
    sender = courier(fake, Session((200, {}, "ok"), (200, {}, "ok")), hook, slept)
    assert sender.deliver("hook", NOTICE) == sender.deliver("hook", NOTICE) == "ok"
    third = sender.deliver("hook", NOTICE)  # the minute's two sends are spent
    assert isinstance(third, Retry) and 55 <= third.intervals[0] <= 61 and not slept
    fake.set(NAMES.channel_pause("hook"), "1", px=2000)
    fake.delete(NAMES.channel_window("hook"))
    sender.session = Session((200, {}, "ok"))
    assert sender.deliver("hook", NOTICE) == "ok" and 0 < slept[0] <= 2


def test_each_type_gets_its_own_form() -> None:
    notice = Notice.from_json(NOTICE)
    slack = messages.message(Channel("s", "slack"), notice)
    assert slack["text"].startswith("*🔴 TRIGGERED [critical] a critical*\n")
    assert "key: db" in slack["text"] and "dedup_key: a" in slack["text"]
    mattermost = messages.message(Channel("m", "mattermost"), notice)
    assert mattermost["text"].startswith("**🔴 TRIGGERED")
    teams = messages.message(Channel("t", "teams"), notice)
    card = teams["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["weight"] == "Bolder"
    webex = messages.message(Channel("w", "webex", room="R1"), notice)
    assert webex["roomId"] == "R1" and webex["markdown"].startswith("**🔴")
    hook = messages.message(Channel("h", "webhook"), notice)
    assert hook["notice"]["state"] == "triggered" and hook["event"]["dedup_key"] == "a"
    mail = messages.message(Channel("e", "email"), notice)
    assert mail["subject"] == "🔴 TRIGGERED [critical] a critical"


def test_templates_are_sandboxed_and_a_body_template_must_make_json() -> None:
    notice = Notice.from_json(NOTICE)
    own = Channel("s", "slack", template="{{ state }}: {{ summary }} on {{ key }}")
    assert messages.message(own, notice)["text"] == "triggered: a critical on db"
    assert messages.message(own, notice, "route's {{ severity }}")["text"] == "route's critical"
    escape = Channel("s", "slack", template="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(Rejected, match="template failed: SecurityError"):
        messages.message(escape, notice)
    body = Channel("h", "webhook", body='{"alert": {{ summary | tojson }}, "n": 1}')
    assert messages.message(body, notice) == {"alert": "a critical", "n": 1}
    with pytest.raises(Rejected, match="did not make JSON"):
        messages.message(Channel("h", "webhook", body="{{ summary }}"), notice)


def test_a_webex_message_carries_its_token_and_slack_text_is_escaped(fake) -> None:
    session = Session((200, {}, "{}"))
    webex = Channel("w", "webex", url="https://webexapis.com/v1/messages", token="T0K",
                    room="R1")
    courier(fake, session, webex, []).deliver("w", NOTICE)
    assert session.sent[0]["headers"]["Authorization"] == "Bearer T0K"
    tricky = Notice("n2", "trigger", alert("<b>&", "critical"), summary="<!channel> & co")
    assert "&lt;!channel&gt; &amp; co" in messages.message(Channel("s", "slack"), tricky)["text"]
    assert json.dumps(NOTICE)  # a notice is plain JSON: what RQ's JSON serializer takes


def test_mail_answers_map_to_outcomes_with_a_real_smtp_server() -> None:
    """aiosmtpd on 127.0.0.1: taken; a 4xx for every recipient retries; a 5xx refuses."""
    from relay.channels import senders
    from relay.errors import RetryLater
    from tests.receivers import MailServer

    server = MailServer()
    try:
        mail = Channel("m", "email", host="127.0.0.1", port=server.port, security="none",
                       sender="relay@example.org", to=("a@example.org", "b@example.org"))
        body = messages.message(mail, Notice.from_json(NOTICE))
        assert senders.send(mail, body, requests.Session()) == "sent to 2 recipient(s)"
        assert server.messages[0]["Subject"] == "🔴 TRIGGERED [critical] a critical"
        assert "dedup_key: a" in server.messages[0].get_content()
        server.rcpt_answer = "451 4.3.0 mailbox busy"
        with pytest.raises(RetryLater, match="every recipient refused"):
            senders.send(mail, body, requests.Session())
        server.rcpt_answer = "550 5.1.1 no such user"
        with pytest.raises(Rejected, match="every recipient refused"):
            senders.send(mail, body, requests.Session())
        starttls = Channel("m", "email", host="127.0.0.1", port=server.port,
                           sender="relay@example.org", to=("a@example.org",))
        with pytest.raises(Rejected, match="STARTTLS"):  # asked for, not offered: refused
            senders.send(starttls, body, requests.Session())
    finally:
        server.close()


def test_metrics_show_each_channels_counts_the_outbox_and_open_alarms(client, fake) -> None:
    fake.hset(NAMES.channel_stats, mapping={"ops-slack:sent": 5, "ops-slack:failed": 1,
                                            "ops-slack:error": "HTTP 404", "skipped": 2})
    fake.rpush(NAMES.outbox, "entry")
    fake.hset(NAMES.alarms, "no-worker:db", "{}")
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    for line in ('pd_relay_channel_sent_total{channel="ops-slack"} 5.0',
                 'pd_relay_channel_failed_total{channel="ops-slack"} 1.0',
                 "pd_relay_outbox_notices 1.0", "pd_relay_outbox_skipped_total 2.0",
                 'pd_relay_alarm_open{condition="no-worker:db"} 1.0'):
        assert line in text, line


def test_routes_check_and_test_name_the_channels(routed, monkeypatch, capsys) -> None:
    from relay.cli import main

    _, settings = routed
    monkeypatch.setattr("relay.cli.configure", lambda *args: None)  # keep pytest's logging
    monkeypatch.setenv("RELAY_KEYS_FILE", str(settings.keys_file))
    monkeypatch.setenv("RELAY_ROUTES_FILE", str(settings.routes_file))
    assert main(["routes", "check"]) == 0
    assert "3 channel(s)" in capsys.readouterr().out
    assert main(["routes", "test", json.dumps(alert("a", "critical")), "--source", "am"]) == 0
    out = capsys.readouterr().out
    assert "route db: key db" in out and "channels: chat, hook, mail" in out
    chat_only = json.dumps(alert("b", "warning", source="chat"))
    monkeypatch.setenv("RELAY_ALLOW_ANONYMOUS", "true")
    assert main(["routes", "test", chat_only]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "route chat-only: to its channels only (not to PagerDuty)", "channels: chat"]


def test_a_resolve_that_fails_midway_is_made_again_with_its_triggers_channels(
        routed, fake) -> None:
    import redis as redis_py

    client, settings = routed
    made: list[tuple[str, str]] = []
    failing = {"on": False}

    def put(channel: Channel, notice: Notice) -> bool:
        if failing["on"]:
            raise redis_py.ConnectionError("Redis went away")
        made.append((channel.name, notice.action))
        return True

    dispatcher = Dispatcher(fake, NAMES, settings, CHANNELS, put)
    client.post("/v2/enqueue", json=alert("a", "critical"))
    dispatcher.step(1)
    client.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "a"})
    failing["on"] = True
    with pytest.raises(redis_py.ConnectionError):
        dispatcher.step(1)
    assert fake.llen(NAMES.outbox_taken) == 1  # left taken, its incident remembered
    failing["on"] = False
    assert dispatcher.recover() == 1
    assert made[-2:] == [("chat", "resolve"), ("hook", "resolve")]
    assert not fake.keys("pdr:heard:*") and fake.llen(NAMES.outbox_taken) == 0


def test_a_failed_message_is_kept_as_long_as_dead_letters() -> None:
    from rq.job import Job

    jobs = fakeredis.FakeRedis()
    notice = Notice.from_json(NOTICE)
    chat = Channel("chat", "slack", url="https://hooks.slack.example/T0/B0/SECRET")
    assert put_job(jobs, NAMES, chat, notice, kept_days=7)
    job = Job.fetch(job_id(notice.id, "chat"), connection=jobs, serializer="json")
    assert job.failure_ttl == 7 * 86_400 and job.args[0] == "chat"
    import zlib

    fields = jobs.hgetall(f"rq:job:{job.id}")  # the job names its channel, never its URL
    stored = zlib.decompress(fields.pop(b"data")) + b"".join(fields.values())
    assert b'"chat"' in stored and b"SECRET" not in stored
