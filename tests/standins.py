"""Stand-ins for the providers of the channel types added in issue 30, on 127.0.0.1: each
checks a request as its provider documents it (method, path, headers, authentication,
content type, fields and their limits) and answers as the provider does: success, a
429 with the provider's own retry hint, a refusal in its own error form.

- Discord, Execute Webhook: POST /api/webhooks/{id}/{token}?wait=true, JSON with
  ``content`` (2,000) and/or ``embeds`` (10; description 4,096, title 256, colour);
  answers the message (200), a 429 ``{"message", "retry_after", "global"}``, 400
  ``{"code": 50006, "message"}``.
- Telegram, sendMessage: POST /bot{token}/sendMessage, JSON chat_id, text (1-4,096
  after entities), parse_mode HTML (tags b, i, u, s, a href, code, pre... only; entities
  &lt; &gt; &amp; &quot;); ``{"ok": true, "result"}``, 429 with
  ``parameters.retry_after``, 400 "can't parse entities", 401 on a wrong token.
- Pushover, messages.json: POST /1/messages.json, form fields token, user (30
  characters each), message (1,024), title (250), priority -2..2 (2 needs retry >= 30
  and expire <= 10,800), url (512), url_title (100); ``{"status": 1, "request"}``,
  400 ``{"status": 0, "errors"}``; POST /1/receipts/cancel_by_tag/{tag}.json with the
  token cancels the repeats of emergency messages sent with ``tags``.
- ntfy, JSON publish: POST / with ``{"topic", "message", "title", "priority" 1-5,
  "tags", "click"}``, optional ``Authorization: Bearer``; the message (200), 429
  ``{"code": 42901, "http": 429, "error"}``.
- Twilio, Messages: POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form fields
  To, From or MessagingServiceSid, Body (1,600), HTTP basic auth SID:token; 201 the
  message resource, 429 code 20429, 400 code 21211.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

from tests.fake_signal_cli import FAKE_SIGNAL_CLI
from tests.standin_server import Answer, Refusal, Request, StandIn, need

__all__ = ["FAKE_SIGNAL_CLI", "Answer", "Refusal", "Request", "StandIn"]


# Discord -----------------------------------------------------------------------------
DISCORD_429: Answer = (429, {}, {"message": "You are being rate limited.",
                                 "retry_after": 2.5, "global": False})


def discord(webhook_id: str, token: str) -> Callable[[Request], Answer]:
    def check(request: Request) -> Answer:
        bad = (400, {}, {"code": 50109, "message": "The request body contains invalid JSON."})
        need(request.path == f"/api/webhooks/{webhook_id}/{token}",
             (401, {}, {"code": 50027, "message": "Invalid Webhook Token"}))
        need(request.query.get("wait") == "true", bad)
        need(request.type == "application/json", bad)
        body = request.json()
        empty = (400, {}, {"code": 50006, "message": "Cannot send an empty message"})
        need(body.get("content") or body.get("embeds"), empty)
        need(len(body.get("content", "")) <= 2000, bad)
        embeds = body.get("embeds", [])
        need(len(embeds) <= 10, bad)
        for embed in embeds:
            need(len(embed.get("description", "").encode("utf-16-le")) // 2 <= 4096, bad)
            need(len(embed.get("title", "")) <= 256, bad)
            need(0 <= embed.get("color", 0) <= 0xFFFFFF, bad)
        return 200, {}, {"id": "1100000000000000001", "channel_id": "1", "type": 0,
                         "content": body.get("content", ""), "embeds": embeds,
                         "webhook_id": webhook_id}
    return check


# Telegram ----------------------------------------------------------------------------
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code",
                 "pre", "tg-spoiler", "span", "blockquote", "tg-emoji"}


class TelegramHtml(HTMLParser):
    """Telegram's HTML parse mode: the tags it knows, entities it knows, balanced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open: list[str] = []
        self.shown: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            self.errors.append(f"Unsupported start tag \"{tag}\"")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"Unmatched end tag \"{tag}\"")

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self.errors.append("Unsupported start tag")
        self.shown.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            self.errors.append(f"Unsupported entity &{name};")
        self.shown.append("x")

    def handle_charref(self, name: str) -> None:
        self.shown.append("x")


def telegram(token: str) -> Callable[[Request], Answer]:
    def check(request: Request) -> Answer:
        need(request.path == f"/bot{token}/sendMessage",
             (401, {}, {"ok": False, "error_code": 401, "description": "Unauthorized"}))
        need(request.type == "application/json",
             (400, {}, {"ok": False, "error_code": 400,
                        "description": "Bad Request: message text is empty"}))
        body = request.json()
        need(body.get("chat_id"), (400, {}, {"ok": False, "error_code": 400,
                                             "description": "Bad Request: chat not found"}))
        text = body.get("text", "")
        if body.get("parse_mode") == "HTML":
            parser = TelegramHtml()
            parser.feed(text)
            parser.close()
            errors = parser.errors + [f"Unclosed tag {t}" for t in parser.open]
            need(not errors, (400, {}, {"ok": False, "error_code": 400, "description":
                                        f"Bad Request: can't parse entities: {errors[:1]}"}))
            shown = "".join(parser.shown)
        else:
            shown = text
        need(0 < len(shown.encode("utf-16-le")) // 2 <= 4096,
             (400, {}, {"ok": False, "error_code": 400,
                        "description": "Bad Request: message is too long"}))
        return 200, {}, {"ok": True, "result": {"message_id": 42, "chat": {
            "id": body["chat_id"]}, "date": 0, "text": shown}}
    return check


TELEGRAM_429: Answer = (429, {}, {"ok": False, "error_code": 429, "description":
                                  "Too Many Requests: retry after 7",
                                  "parameters": {"retry_after": 7}})


# Pushover ----------------------------------------------------------------------------
def pushover(token: str, user: str) -> Callable[[Request], Answer]:
    def refused(field: str, why: str) -> Answer:
        return 400, {}, {field: "invalid", "errors": [why], "status": 0,
                         "request": "5042853c-402d-4a18-abcb-168734a801de"}

    def check(request: Request) -> Answer:
        if request.path.startswith("/1/receipts/cancel_by_tag/"):
            need(request.path.endswith(".json") and request.type ==
                 "application/x-www-form-urlencoded", (404, {}, {"status": 0}))
            need(request.form().get("token") == token,
                 refused("token", "application token is invalid"))
            return 200, {}, {"status": 1, "canceled": 1, "request": "e460545a"}
        need(request.path == "/1/messages.json", (404, {}, {"status": 0}))
        need(request.type == "application/x-www-form-urlencoded",
             refused("message", "message cannot be blank"))
        form = request.form()
        need(form.get("token") == token, refused("token", "application token is invalid"))
        need(form.get("user") == user, refused("user", "user identifier is not a valid "
                                                        "user, group, or subscribed user key"))
        need(0 < len(form.get("message", "")) <= 1024,
             refused("message", "message cannot be blank or longer than 1024 characters"))
        need(len(form.get("title", "")) <= 250, refused("title", "title is too long"))
        need(len(form.get("url", "")) <= 512, refused("url", "url is too long"))
        need(len(form.get("url_title", "")) <= 100, refused("url_title", "too long"))
        priority = int(form.get("priority", "0"))
        need(-2 <= priority <= 2, refused("priority", "priority is invalid"))
        if priority == 2:
            need(int(form.get("retry", "0")) >= 30,
                 refused("retry", "retry must be supplied with priority=2 and be >= 30"))
            need(0 < int(form.get("expire", "0")) <= 10800,
                 refused("expire", "expire must be supplied with priority=2 and be <= 10800"))
        found = {"status": 1, "request": "647d2300-702c-4b38-8b2f-d56326ae460b"}
        if priority == 2:
            found["receipt"] = "rLqVuqTRh62UzxtmqiaLzQmVcPgiCy"
        return 200, {"X-Limit-App-Remaining": "7496"}, found
    return check


# ntfy ------------------------------------------------------------------------------
NTFY_429: Answer = (429, {}, {"code": 42901, "http": 429,
                              "error": "limit reached: too many requests"})


def ntfy(topic: str, token: str = "") -> Callable[[Request], Answer]:
    def check(request: Request) -> Answer:
        unauthorized = (401, {}, {"code": 40101, "http": 401, "error": "unauthorized"})
        if token:
            need(request.headers.get("authorization") == f"Bearer {token}", unauthorized)
        need(request.path == "/", (404, {}, {"code": 40401, "http": 404, "error": "not found"}))
        body = request.json()
        invalid = (400, {}, {"code": 40007, "http": 400, "error": "invalid request"})
        need(body.get("topic") == topic, (403, {}, {"code": 40301, "http": 403,
                                                    "error": "forbidden"}))
        need(isinstance(body.get("message"), str) and
             len(body["message"].encode()) <= 4096, invalid)
        need(body.get("priority", 3) in (1, 2, 3, 4, 5), invalid)
        need(isinstance(body.get("tags", []), list), invalid)
        return 200, {}, {"id": "hwQ2YpKdmg", "time": 1700000000, "event": "message",
                         "topic": topic, "message": body["message"],
                         "title": body.get("title", ""), "priority": body.get("priority", 3),
                         "tags": body.get("tags", [])}
    return check


# Twilio ------------------------------------------------------------------------------
TWILIO_429: Answer = (429, {}, {"code": 20429, "message": "Too Many Requests",
                                "more_info": "https://www.twilio.com/docs/errors/20429",
                                "status": 429})
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def twilio(sid: str, token: str, valid: Callable[[str], bool] = lambda _: True
           ) -> Callable[[Request], Answer]:
    def error(status: int, code: int, message: str) -> Answer:
        return status, {}, {"code": code, "message": message, "status": status,
                            "more_info": f"https://www.twilio.com/docs/errors/{code}"}

    def check(request: Request) -> Answer:
        need(request.basic() == (sid, token), error(401, 20003, "Authenticate"))
        need(request.path == f"/2010-04-01/Accounts/{sid}/Messages.json",
             error(404, 20404, "The requested resource was not found"))
        need(request.type == "application/x-www-form-urlencoded",
             error(400, 21602, "Message body is required."))
        form = request.form()
        to = form.get("To", "")
        need(E164.fullmatch(to) and valid(to),
             error(400, 21211, f"The 'To' number {to} is not a valid phone number."))
        need(form.get("From") or form.get("MessagingServiceSid"),
             error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required"))
        need(0 < len(form.get("Body", "")) <= 1600,
             error(400, 21617, "The concatenated message body exceeds the 1600 character "
                               "limit."))
        return 201, {}, {"sid": "SM" + "0" * 31 + str(len(to) % 10), "account_sid": sid,
                         "to": to, "from": form.get("From"), "body": form["Body"],
                         "status": "queued", "num_segments": "1",
                         "uri": f"/2010-04-01/Accounts/{sid}/Messages/SM0.json"}
    return check
