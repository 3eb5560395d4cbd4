"""The channel types of issue 30 against stand-ins of their providers (tests/standins.py):
each request as the provider documents it, each answer mapped to its outcome (sent,
retry with the provider's hint, refused), the rendering and its escaping, and secrets in
no reply or error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from relay.channels import messages, senders
from relay.channels.digest import Digest, Line
from relay.channels.notice import Notice
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel
from tests import standins
from tests.standins import StandIn

HOOK_ID, HOOK_TOKEN = "1180000000000000001", "hSECRETwebhookTOKENvalue0123456789"
BOT_TOKEN = "123456789:AAHsecretBOTtokenVALUE0123456789abc"
APP_TOKEN, USER_KEY = "azGDORePK8gMaC0QOYAMyEEuzJnyUi", "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
TWILIO_SID, TWILIO_TOKEN = "AC" + "5ec4e7" * 5 + "ab", "twilioSECRETauthTOKEN0123456789ab"
NTFY_TOPIC, NTFY_TOKEN = "relay-oncall-9f3c2a7b1d", "tk_SECRETntfyTOKENvalue0123456"
SECRETS = (HOOK_TOKEN, BOT_TOKEN, APP_TOKEN, USER_KEY, TWILIO_SID, TWILIO_TOKEN,
           NTFY_TOPIC, NTFY_TOKEN)
EVIL = "disk <b>full</b> & @everyone <@&123> [x](javascript:alert(1)) *bold*\n/start"


def notice(summary: str = "disk full", severity: str = "critical", action: str = "trigger",
           **extra: Any) -> Notice:
    event = {"event_action": action, "dedup_key": "disk-db1",
             "payload": {"summary": summary, "source": "db1", "severity": severity},
             **extra}
    return Notice("n1", action, event, key="db", route="db", severity=severity,
                  accepted_ms=1_700_000_000_000)


def digest(total: int = 37) -> Digest:
    lines = tuple(Line("triggered", "critical", f"disk {n} full", source="db1")
                  for n in range(min(total, 50)))
    return Digest("d1", "c", "muted", 1_700_000_000_000, 1_700_003_600_000, total,
                  {"critical": 3, "warning": total - 3}, {"triggered": total}, lines)


@pytest.fixture
def stand_ins() -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for stand_in in made:
        stand_in.close()


def start(made: list[StandIn], check: Any) -> StandIn:
    stand_in = StandIn(check)
    made.append(stand_in)
    return stand_in


def send(channel: Channel, body: dict[str, Any]) -> str:
    return senders.send(channel, body, requests.Session())


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def outcomes(channel: Channel, stand_in: StandIn, hint: float) -> None:
    """The stand-in's 429 retries after the provider's hint; its 400 refuses; every
    reply and error masks the channel's secrets."""
    body = messages.message(channel, notice())
    with pytest.raises(RetryLater) as later:
        send(channel, body)
    assert later.value.status == 429 and later.value.retry_after == hint
    no_secret(str(later.value) + later.value.reply)
    channel_bad = Channel(**{**channel.__dict__, "token": channel.token and channel.token[:-1]
                             + "x", "user": channel.user and channel.user[:-1] + "x"})
    with pytest.raises(Rejected) as refused:
        send(channel_bad, messages.message(channel_bad, notice()))
    assert refused.value.status in (400, 401)
    no_secret(str(refused.value) + refused.value.reply)


def test_discord_posts_an_embed_that_pings_no_one_and_maps_its_answers(stand_ins) -> None:
    discord = start(stand_ins, standins.discord(HOOK_ID, HOOK_TOKEN))
    channel = Channel("d", "discord", url=f"{discord.url}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}")
    reply = send(channel, messages.message(channel, notice(EVIL)))
    assert reply == "sent: message 1100000000000000001"
    body = discord.taken()[0].json()
    assert body["allowed_mentions"] == {"parse": []} and "content" not in body
    embed = body["embeds"][0]
    assert embed["color"] == 0xD92D20 and embed["timestamp"] == "2023-11-14T22:13:20+00:00"
    headline = embed["description"].split("\n")[0]
    # Markdown shown as typed, the mention broken by a word joiner, one line
    assert headline == ("**🔴 TRIGGERED [critical] disk \\<b\\>full\\</b\\> \\& @\u2060everyone "
                        "\\<@\\&123\\> \\[x\\]\\(javascript:alert\\(1\\)\\) \\*bold\\* "
                        "/start**")
    resolved = messages.message(channel, notice(action="resolve"))
    assert resolved["embeds"][0]["color"] == 0x12B76A
    discord.script(standins.DISCORD_429)  # a 429 without Retry-After: the body's hint
    with pytest.raises(RetryLater) as later:
        send(channel, messages.message(channel, notice()))
    assert later.value.retry_after == 2.5
    wrong = Channel("d", "discord", url=f"{discord.url}/api/webhooks/{HOOK_ID}/x{HOOK_TOKEN}")
    with pytest.raises(Rejected) as refused:
        send(wrong, messages.message(wrong, notice()))
    assert refused.value.status == 401 and "Invalid Webhook Token" in refused.value.reply
    no_secret(str(refused.value) + refused.value.reply + str(later.value) + reply)


def test_discord_cuts_a_long_message_to_its_limit() -> None:
    long = Channel("d", "discord", template="{% for n in range(3000) %}line {{ n }}\n"
                   "{% endfor %}")
    description = messages.message(long, notice())["embeds"][0]["description"]
    assert len(description) <= 4096 and description.endswith("line 409") is False
    assert description.split("\n")[-1].startswith("line ")  # whole lines only


def test_telegram_sends_html_that_parses_and_maps_its_answers(stand_ins) -> None:
    bot = start(stand_ins, standins.telegram(BOT_TOKEN))
    channel = Channel("t", "telegram", url=bot.url, token=BOT_TOKEN, chat="-1001234567890")
    evil = notice(EVIL, links=[{"href": 'https://grafana.example/d?a=1&b="2"<',
                                "text": "<i>graph</i>"}])
    assert send(channel, messages.message(channel, evil)) == "sent: message 42"
    body = bot.taken()[0].json()
    assert body["chat_id"] == "-1001234567890" and body["parse_mode"] == "HTML"
    assert body["link_preview_options"] == {"is_disabled": True}
    lines = body["text"].split("\n")
    assert lines[0] == ("<b>CRIT disk &lt;b&gt;full&lt;/b&gt; &amp; @\u2060everyone "
                        "&lt;@&amp;123&gt; [x](javascript:alert(1)) *bold* /start "
                        "on db1</b>")
    assert lines[-1] == ('<a href="https://grafana.example/d?a=1&amp;b=%222%22%3C">'
                         "&lt;i&gt;graph&lt;/i&gt;</a>")
    bot.script(standins.TELEGRAM_429)
    outcomes(channel, bot, 7.0)


def test_telegram_keeps_to_4096_characters_as_telegram_counts_them(stand_ins) -> None:
    bot = start(stand_ins, standins.telegram(BOT_TOKEN))
    many = Channel("t", "telegram", url=bot.url, token=BOT_TOKEN, chat="1",
                   template="{% for n in range(2000) %}<b>{{ n }}</b> &amp; 🔴\n{% endfor %}")
    one = Channel("t", "telegram", url=bot.url, token=BOT_TOKEN, chat="1",
                  template="<b>{{ summary }}</b>")
    for channel, summary in ((many, "x"), (one, "&<" * 3000)):
        send(channel, messages.message(channel, notice(summary)))
    assert bot.statuses() == [200, 200]  # both parse, neither too long


def test_pushover_maps_severity_to_priority_and_emergency_needs_retry_and_expire(
        stand_ins) -> None:
    server = start(stand_ins, standins.pushover(APP_TOKEN, USER_KEY))
    channel = Channel("p", "pushover", url=f"{server.url}/1/messages.json", token=APP_TOKEN,
                      user=USER_KEY, sound="siren", emergency_retry_s=30,
                      emergency_expire_s=10800)
    link = [{"href": "https://runbook.example/disk", "text": "runbook"}]
    for severity in ("critical", "error", "warning", "info"):
        send(channel, messages.message(channel, notice(f"disk {severity}", severity,
                                                       links=link)))
    send(channel, messages.message(channel, notice(action="resolve")))
    forms = [request.form() for request in server.taken() if request.path.endswith("/messages"
                                                                                    ".json")]
    assert [form["priority"] for form in forms] == ["2", "1", "0", "-1", "-1"]
    assert forms[0]["retry"] == "30" and forms[0]["expire"] == "10800"
    assert "retry" not in forms[1] and forms[0]["sound"] == "siren"
    assert forms[0]["title"] == "CRIT disk critical on db1"
    assert forms[4]["title"] == "CRIT disk full on db1 [resolved]"
    assert forms[0]["url"] == "https://runbook.example/disk" and forms[0]["url_title"] == "runbook"
    assert forms[0]["timestamp"] == "1700000000" and "key: db" in forms[0]["message"]
    server.script((429, {"Retry-After": "60"}, {"status": 0, "errors": ["over quota"]}))
    outcomes(channel, server, 60.0)


def test_pushover_cancels_an_emergencys_repeats_when_its_incident_ends(stand_ins) -> None:
    server = start(stand_ins, standins.pushover(APP_TOKEN, USER_KEY))
    channel = Channel("p", "pushover", url=f"{server.url}/1/messages.json", token=APP_TOKEN,
                      user=USER_KEY)
    send(channel, messages.message(channel, notice()))
    tag = server.taken()[0].form()["tags"]
    assert tag.startswith("pdr") and "disk" not in tag
    reply = send(channel, messages.message(channel, notice(action="resolve")))
    assert reply.endswith("emergency repeats cancelled: 1")
    cancel, resolved = server.taken()[1:]
    assert cancel.path == f"/1/receipts/cancel_by_tag/{tag}.json"
    assert cancel.form() == {"token": APP_TOKEN} and resolved.form()["priority"] == "-1"
    assert "tags" not in resolved.form() and "cancel_emergency_tag" not in resolved.form()
    warning = messages.message(channel, notice(severity="warning", action="resolve"))
    assert "cancel_emergency_tag" not in warning  # only a critical was an emergency
    server.script((503, {}, {"status": 0}))  # the cancel fails: the whole is retried
    with pytest.raises(RetryLater):
        send(channel, messages.message(channel, notice(action="acknowledge")))
    server.script((400, {}, {"status": 0, "errors": ["no such tag"]}))  # refused: sent on
    assert "cancelling its emergency repeats refused: HTTP 400" in send(
        channel, messages.message(channel, notice(action="acknowledge")))


def test_pushover_status_0_in_a_2xx_is_a_refusal(stand_ins) -> None:
    server = start(stand_ins, standins.pushover(APP_TOKEN, USER_KEY))
    channel = Channel("p", "pushover", url=f"{server.url}/1/messages.json", token=APP_TOKEN,
                      user=USER_KEY)
    server.script((200, {}, {"status": 0, "errors": [f"user {USER_KEY} is disabled"]}))
    with pytest.raises(Rejected, match="status not 1") as refused:
        send(channel, messages.message(channel, notice()))
    no_secret(refused.value.reply)


def test_ntfy_publishes_json_with_priority_and_tags_from_severity(stand_ins) -> None:
    server = start(stand_ins, standins.ntfy(NTFY_TOPIC, NTFY_TOKEN))
    channel = Channel("n", "ntfy", url=f"{server.url}/{NTFY_TOPIC}", token=NTFY_TOKEN)
    for severity in ("critical", "error", "warning", "info"):
        send(channel, messages.message(channel, notice(severity=severity)))
    send(channel, messages.message(channel, notice(action="resolve")))
    bodies = [request.json() for request in server.taken()]
    assert [b["priority"] for b in bodies] == [5, 4, 3, 2, 2]
    assert [b["tags"] for b in bodies] == [["rotating_light"], ["red_circle"], ["warning"],
                                           ["information_source"], ["white_check_mark"]]
    assert bodies[0]["title"] == "CRIT disk full on db1" and bodies[0]["topic"] == NTFY_TOPIC
    server.script(standins.NTFY_429)
    with pytest.raises(RetryLater) as later:
        send(channel, messages.message(channel, notice()))
    assert later.value.status == 429
    wrong = Channel("n", "ntfy", url=f"{server.url}/{NTFY_TOPIC}", token=NTFY_TOKEN + "x")
    with pytest.raises(Rejected) as refused:
        send(wrong, messages.message(wrong, notice()))
    assert refused.value.status == 401
    no_secret(str(later.value) + later.value.reply + str(refused.value) + refused.value.reply)


def test_sms_is_one_gsm7_segment_per_recipient_and_remembers_who_has_it(stand_ins) -> None:
    bad = "+15550000002"
    server = start(stand_ins, standins.twilio(TWILIO_SID, TWILIO_TOKEN, lambda n: n != bad))
    to = ("+15550000001", bad, "+15550000003")
    channel = Channel("s", "sms", url=server.url, account=TWILIO_SID, token=TWILIO_TOKEN,
                      sender="+15557654321", to=to)
    body = messages.message(channel, notice("disk full 🔥 on /var — naïve ünïcode " + "x" * 200,
                                            action="resolve"))
    text = body["text"]
    assert text.startswith("CRIT disk full ? on /var - naive ünicode x")
    assert text.endswith("x... [resolved]")
    assert len(text) <= 160 and text.isascii() is False  # ü is GSM-7: one septet
    reply = send(channel, body)
    assert reply.startswith("sent to 2 recipient(s); refused: +155...: HTTP 400: 21211")
    forms = [request.form() for request in server.taken()]
    assert [f["To"] for f in forms] == [to[0], to[2]] and forms[0]["From"] == "+15557654321"
    assert all(f["Body"] == text for f in forms)
    server.script(standins.TWILIO_429)
    with pytest.raises(RetryLater) as later:
        send(channel, body)
    assert later.value.status == 429
    no_secret(reply + str(later.value) + later.value.reply)
    wrong = Channel(**{**channel.__dict__, "token": "x" + TWILIO_TOKEN})
    with pytest.raises(Rejected) as refused:
        send(wrong, body)
    assert refused.value.status is None and "20003" in refused.value.reply
    no_secret(str(refused.value) + refused.value.reply)


def test_sms_short_line_says_severity_summary_source_and_state() -> None:
    channel = Channel("s", "sms", to=("+15550000001",))
    assert messages.message(channel, notice(action="resolve"))["text"] == \
        "CRIT disk full on db1 [resolved]"
    assert messages.message(channel, notice("db1 is down", "warning"))["text"] == \
        "WARN db1 is down"
    assert messages.message(channel, notice(action="acknowledge"))["text"] == \
        "CRIT disk full on db1 [ack]"


@pytest.mark.parametrize("kind", ["discord", "telegram", "pushover", "ntfy", "sms", "signal"])
def test_every_new_type_renders_a_digest_within_its_limits(kind: str) -> None:
    channel = Channel("c", kind, chat="1", to=("+15550000001",))
    found = messages.digest_message(channel, digest(500))
    text = {"discord": lambda f: f["embeds"][0]["description"],
            "telegram": lambda f: f["text"], "pushover": lambda f: f["title"] + f["message"],
            "ntfy": lambda f: f["title"] + f["message"], "sms": lambda f: f["text"],
            "signal": lambda f: f["text"]}[kind](found)
    assert "500 notices held in quiet hours" in text.replace("\\", "")
    assert "and 49" in text or "and 4" in text or kind == "sms"
    limit = {"discord": 4096, "telegram": 4096, "pushover": 1024 + 250, "ntfy": 4096,
             "sms": 160, "signal": 2000}[kind]
    assert len(text) <= limit
    if kind == "pushover":
        assert found["priority"] == 0  # a digest never wakes anyone with an emergency
    if kind == "ntfy":
        assert found["priority"] == 3


def test_a_phone_gets_one_short_line_first() -> None:
    for kind in ("pushover", "ntfy", "signal", "telegram"):
        found = messages.message(Channel("c", kind, chat="1"), notice())
        first = found.get("title") or found["text"].split("\n")[0]
        assert first.replace("<b>", "").replace("</b>", "") == "CRIT disk full on db1", kind


def test_a_templates_values_are_escaped_for_the_types_markup() -> None:
    tricky = notice("<i>x</i> & @everyone *b*")
    telegram = Channel("t", "telegram", chat="1", template="<b>{{ summary }}</b>")
    assert messages.message(telegram, tricky)["text"] == \
        "<b>&lt;i&gt;x&lt;/i&gt; &amp; @\u2060everyone *b*</b>"
    discord = Channel("d", "discord", template="**{{ summary }}**")
    assert messages.message(discord, tricky)["embeds"][0]["description"] == \
        "**\\<i\\>x\\</i\\> \\& @\u2060everyone \\*b\\***"
    sms = Channel("s", "sms", to=("+15550000001",), template="{{ state }}: {{ summary }}")
    assert messages.message(sms, tricky)["text"] == "triggered: <i>x</i> & @everyone *b*"
