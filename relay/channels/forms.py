"""The messages of the types added for issue 30 (Discord, Telegram, Pushover, ntfy, SMS,
Signal), a notice's and a digest's, each in what its sender posts (``senders``):

- discord: an Execute Webhook body: one embed (its description the chat text in
  Markdown, at most 4,096 characters; its colour the severity's) and
  ``allowed_mentions: {parse: []}``, so that nothing a sender writes pings anyone;
- telegram: sendMessage's fields in HTML parse mode, the phone's short line in bold
  first, at most 4,096 characters (UTF-16 code units, as Telegram counts);
- pushover: title (the short line, 250 characters), message (1,024), priority from the
  severity (critical: emergency, with ``retry``/``expire`` and a tag of its incident,
  whose repeats the incident's acknowledge or resolve cancels), a link, the time;
- ntfy: JSON publish fields: title, message, priority 1-5 and tags from the severity;
- sms: one line, one GSM-7 segment (``relay.channels.phone``);
- signal: plain text, the short line first, at most 2,000 characters (Signal sends a
  longer one as an attachment).

A template (the channel's or a route's) replaces the text: Discord's description,
Telegram's text, Pushover's and ntfy's message, the whole SMS or Signal message.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relay.channels import escape, phone
from relay.channels.digest import Digest, outline
from relay.routes.channels import Channel

TYPES = ("discord", "telegram", "pushover", "ntfy", "sms", "signal")
COLOURS = {"critical": 0xD92D20, "error": 0xF79009, "warning": 0xFDB022, "info": 0x2E90FA}
DONE_COLOURS = {"resolved": 0x12B76A, "acknowledged": 0x98A2B3}
DISCORD_LINES, PHONE_LINES = 20, 5  # a digest's lines shown: a phone gets a few
DISCORD_TEXT, TELEGRAM_TEXT, SIGNAL_TEXT = 4096, 4096, 2000
PUSHOVER_TITLE, PUSHOVER_MESSAGE, PUSHOVER_URL, PUSHOVER_URL_TITLE = 250, 1024, 512, 100
NTFY_TITLE, NTFY_MESSAGE = 250, 4000  # ntfy keeps 4,096 bytes of a message; UTF-8 below
CANCEL = "cancel_emergency_tag"  # pushover: the sender first cancels that tag's repeats
TAG = re.compile(r"<[^>]*>")
Render = Callable[[str, dict[str, Any], escape.Style], str]
Text = Callable[[dict[str, Any], escape.Style], tuple[str, list[str]]]


def notice(channel: Channel, values: dict[str, Any], own: str | None, render: Render,
           chat: Text) -> dict[str, Any]:
    """``values`` (``messages.context``) as ``channel``'s type posts them; ``own`` a
    template of the text, rendered by ``render`` in the type's style; ``chat`` the chat
    types' headline and detail lines (``messages.text``)."""
    kind = channel.type
    style = escape.STYLES.get(kind, escape.PLAIN)
    short = phone.headline(values)
    chat_headline, lines = chat(values, style)
    text = render(own, values, style) if own else ""
    if kind == "discord":
        description = text or "\n".join([f"**{chat_headline}**", *lines])
        colour = DONE_COLOURS.get(values["state"], COLOURS.get(values["severity"], 0))
        return discord(description, colour, values["accepted"])
    if kind == "telegram":
        return telegram(channel, text or "\n".join([f"<b>{style.escape(short)}</b>", *lines]))
    if kind == "sms":
        return {"text": phone.sms(text or phone.headline(values, sms=True))}
    if kind == "signal":
        return {"text": _within(text.split("\n") if text else [short, *lines], SIGNAL_TEXT)}
    link = next((found for found in (escape.web_url(item.get("href")) for item in
                                     values["links"]) if found), None) \
        or escape.web_url(values["client_url"])
    body = text or "\n".join(lines) or short
    if kind == "pushover":
        found: dict[str, Any] = {
            "title": phone.cut(short, PUSHOVER_TITLE),
            "message": _within(body.split("\n"), PUSHOVER_MESSAGE),
            "priority": phone.pushover_priority(values["severity"], values["state"]),
            "timestamp": int(datetime.fromisoformat(values["accepted"]).timestamp())}
        if link and len(link) <= PUSHOVER_URL:
            found["url"] = link
            found["url_title"] = phone.cut(_link_text(values) or "link", PUSHOVER_URL_TITLE)
        tag = emergency_tag(values)
        if found["priority"] == 2:
            found["tags"] = tag  # its repeats are cancelled by this tag when it ends
        elif values["state"] in ("acknowledged", "resolved") and values["severity"] == \
                "critical":
            found[CANCEL] = tag
        return pushover(channel, found)
    tags = [phone.NTFY_TAGS.get(values["state"], phone.NTFY_TAGS.get(values["severity"], ""))]
    found = {"title": phone.cut(short, NTFY_TITLE),
             "message": _within(body.split("\n"), NTFY_MESSAGE, _utf8),
             "priority": phone.ntfy_priority(values["severity"], values["state"]),
             "tags": [tag for tag in tags if tag] + (["test"] if values["test"] else [])}
    if link:
        found["click"] = link
    return found


def digest(channel: Channel, found: Digest) -> dict[str, Any]:
    """A digest (``relay.channels.digest.outline``) as ``channel``'s type posts it."""
    kind = channel.type
    style = escape.STYLES.get(kind, escape.PLAIN)
    headline, lines, _ = outline(found, DISCORD_LINES if kind == "discord" else PHONE_LINES)
    shown = [style.escape(line) for line in lines]
    severity = phone.digest_severity(found.by_severity)
    total = found.total
    if kind == "discord":
        worst = next((name for name in COLOURS if found.by_severity.get(name)), "info")
        until = datetime.fromtimestamp(found.until_ms / 1000, UTC).isoformat(timespec="seconds")
        return discord("\n".join(fitted([f"**{style.escape(headline)}**"], shown, total,
                                         DISCORD_TEXT, phone.utf16)), COLOURS[worst], until)
    if kind == "telegram":
        return telegram(channel, "\n".join(fitted([f"<b>{style.escape(headline)}</b>"], shown,
                                                  total, TELEGRAM_TEXT, _shown)))
    if kind == "sms":
        kept = fitted([headline], lines, total, phone.SMS_SEPTETS, _septets, " | ")
        none = kept[1:2] == [f"and {total} more"]  # no line fits: the headline counts them
        return {"text": phone.sms(headline if none else " | ".join(kept))}
    if kind == "signal":
        return {"text": _within(fitted([headline], shown, total, SIGNAL_TEXT), SIGNAL_TEXT)}
    limit, size = (PUSHOVER_MESSAGE, len) if kind == "pushover" else (NTFY_MESSAGE, _utf8)
    body = _within(fitted([], shown, total, limit, size) or [headline], limit, size)
    if kind == "pushover":
        return pushover(channel, {
            "title": phone.cut(headline, PUSHOVER_TITLE), "message": body,
            "priority": phone.pushover_priority(severity, "triggered"),
            "timestamp": found.until_ms // 1000})
    return {"title": phone.cut(headline, NTFY_TITLE), "message": body,
            "priority": phone.ntfy_priority(severity, "triggered"),
            "tags": ["bookmark_tabs"] + (["test"] if found.test else [])}


def fitted(head: list[str], lines: list[str], total: int, limit: int,
           size: Callable[[str], int] = len, sep: str = "\n") -> list[str]:
    """``head``, as many whole ``lines`` as fit in ``limit`` with it, and a tail that
    counts every notice of ``total`` not shown ("and N more"): what is cut is counted."""
    for kept in range(len(lines), -1, -1):
        hidden = total - kept
        found = [*head, *lines[:kept], *([f"and {hidden} more"] if hidden > 0 else [])]
        if size(sep.join(found)) <= limit:
            return found
    return found


def discord(description: str, colour: int, at: str) -> dict[str, Any]:
    text = "\n".join(phone.lines_within(description.split("\n"), DISCORD_TEXT, phone.utf16))
    return {"embeds": [{"description": text, "color": colour, "timestamp": at}],
            "allowed_mentions": {"parse": []}}


def telegram(channel: Channel, text: str) -> dict[str, Any]:
    if _shown(text.split("\n", 1)[0]) > TELEGRAM_TEXT:  # cut mid-line would break markup:
        plain = html.unescape(TAG.sub("", text))  # so the message becomes plain text
        text = escape.html(phone.cut(plain, TELEGRAM_TEXT, phone.utf16))
    kept = "\n".join(phone.lines_within(text.split("\n"), TELEGRAM_TEXT, _shown))
    return {"chat_id": channel.chat, "text": kept, "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True}}


def pushover(channel: Channel, found: dict[str, Any]) -> dict[str, Any]:
    """Pushover's fields besides the token and user key (the sender adds those)."""
    if found["priority"] == 2:
        found["retry"], found["expire"] = channel.emergency_retry_s, channel.emergency_expire_s
    for name in ("sound", "device"):
        if getattr(channel, name):
            found[name] = getattr(channel, name)
    return found


def emergency_tag(values: dict[str, Any]) -> str:
    """The Pushover tag of an incident's emergency message (its key and dedup_key,
    hashed: a tag is sent to Pushover, the dedup_key need not be)."""
    digest = hashlib.sha256(f"{values['key']}\x1f{values['dedup_key']}".encode())
    return "pdr" + digest.hexdigest()[:24]


def _link_text(values: dict[str, Any]) -> str:
    for item in values["links"]:
        if escape.web_url(item.get("href")):
            return escape.one_line(item.get("text") or "")
    return escape.one_line(values["client"] or "")


def _shown(text: str) -> int:
    """What Telegram counts of HTML: the text its markup shows, in UTF-16 code units."""
    return phone.utf16(html.unescape(TAG.sub("", text)))


def _septets(text: str) -> int:
    return phone.septets(" ".join(phone.gsm7(text).split()))


def _utf8(text: str) -> int:
    return len(text.encode())


def _within(lines: list[str], limit: int, size: Callable[[str], int] = len) -> str:
    return "\n".join(phone.lines_within(lines, limit, size))
