"""The per-type parts of the routes file's ``channels`` section: which types there are,
the fields each takes and needs, their default pace, the checks that depend on the type
(a phone number is a recipient of ``sms``, a mail address of ``email``), and the
defaults filled in once an entry is checked (``finish``).

Default sends a minute (``PER_MINUTE``), from each provider's documented limits:
Slack's incoming webhooks take about a message a second; Discord's webhooks about 30 a
minute (its rate-limit headers say so; a 429 carries ``retry_after``); Telegram asks
bots for at most 20 messages a minute in a group; ntfy.sh lets a visitor burst 60
requests then one per 5 s (12 a minute); Pushover has no per-minute limit, only a
monthly quota and a plea for no more than 2 requests at once (30); a Twilio long code
sends a segment a second per number (30 jobs a minute leaves room for two recipients);
signal-cli starts a JVM per message and Signal throttles senders it deems noisy (12).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from relay.routes import fields as check

TYPES = ("slack", "mattermost", "teams", "webex", "webhook", "email",
         "discord", "pushover", "signal", "telegram", "ntfy", "sms")
PER_MINUTE = {"slack": 60, "mattermost": 60, "teams": 60, "webex": 60, "webhook": 600,
              "email": 60, "discord": 30, "pushover": 30, "signal": 12, "telegram": 20,
              "ntfy": 12, "sms": 30}
WEBEX_URL = "https://webexapis.com/v1/messages"
PUSHOVER_URL = "https://api.pushover.net/1/messages.json"
TELEGRAM_URL = "https://api.telegram.org"
TWILIO_URL = "https://api.twilio.com"
DEFAULT_URLS = {"webex": WEBEX_URL, "pushover": PUSHOVER_URL, "telegram": TELEGRAM_URL,
                "sms": TWILIO_URL}
FIELDS = {
    "slack": {"url"}, "mattermost": {"url"}, "teams": {"url"},
    "webex": {"token", "room", "url"},
    "webhook": {"url", "method", "headers", "body"},
    "email": {"host", "port", "security", "username", "password", "sender", "to", "subject"},
    "discord": {"url"},
    "pushover": {"token", "user", "sound", "device", "emergency_retry_s",
                 "emergency_expire_s", "url"},
    "signal": {"account", "to", "command"},
    "telegram": {"token", "chat", "url"},
    "ntfy": {"url", "token", "username", "password"},
    "sms": {"account", "token", "sender", "service", "to", "url"},
}
REQUIRED = {"slack": ("url",), "mattermost": ("url",), "teams": ("url",),
            "webex": ("token", "room"), "webhook": ("url",),
            "email": ("host", "sender", "to"), "discord": ("url",),
            "pushover": ("token", "user"), "signal": ("account", "to"),
            "telegram": ("token", "chat"), "ntfy": ("url",),
            "sms": ("account", "token", "to")}  # and sender or service (``finish``)

PHONE = re.compile(r"\+[1-9][0-9]{6,14}")  # E.164
UUID = re.compile(r"(PNI:)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{12}")
SIGNAL_USERNAME = re.compile(r"u:[A-Za-z0-9_]{3,32}\.[0-9]{2,10}")
SIGNAL_GROUP = re.compile(r"group:[A-Za-z0-9+/=_-]{16,100}")
PUSHOVER_KEY = re.compile(r"[A-Za-z0-9]{30}")
TWILIO_SID = re.compile(r"(AC|MG)[0-9a-fA-F]{32}")
SENDER_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")  # an alphanumeric sender ID
TELEGRAM_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,100}")  # 123456:ABC-DEF1234gh...
TELEGRAM_CHAT = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")
SOUND = re.compile(r"[a-z0-9_-]{1,32}")
EMERGENCY_RETRY_MIN, EMERGENCY_EXPIRE_MAX = 30, 10800  # Pushover's documented bounds
SIGNAL_TIMEOUT_S = 60.0  # signal-cli starts a JVM: far slower than an HTTP request

Checked = tuple[Any, str]


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[Any], Checked]:
    def test(value: Any) -> Checked:
        ok = isinstance(value, str) and pattern.fullmatch(value) is not None
        return value, "" if ok else f"want {what}"
    return test


def _listing(test: Callable[[Any], Checked], what: str) -> Callable[[Any], Checked]:
    def each(value: Any) -> Checked:
        items = [value] if isinstance(value, str) else value
        ok = isinstance(items, list) and 0 < len(items) <= 20 and all(
            test(item)[1] == "" for item in items) and len(set(items)) == len(items)
        return (tuple(items) if ok else value,
                "" if ok else f"want one to 20 {what}, each once")
    return each


def _seconds_between(low: int, high: int) -> Callable[[Any], Checked]:
    def test(value: Any) -> Checked:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return value, "" if ok else f"want whole seconds from {low} to {high}"
    return test


phone = _matching(PHONE, "a phone number in E.164 form (+ and country code: +4915112345678)")
signal_recipient = _matching(re.compile("|".join(p.pattern for p in (
    PHONE, UUID, SIGNAL_USERNAME, SIGNAL_GROUP))), "")

# Checks of fields only the new types have (the shared ones are in relay.routes.channels).
CHECKS = {
    "user": _matching(PUSHOVER_KEY, "a Pushover user or group key (30 letters and digits)"),
    "sound": _matching(SOUND, "a Pushover sound's name (pushover, siren, none, ...)"),
    "device": _matching(re.compile(r"[A-Za-z0-9_,-]{1,100}"), "Pushover device names"),
    "emergency_retry_s": _seconds_between(EMERGENCY_RETRY_MIN, 10800),
    "emergency_expire_s": _seconds_between(EMERGENCY_RETRY_MIN, EMERGENCY_EXPIRE_MAX),
    "account": check.text, "command": check.text,
    "chat": lambda value: (str(value), "") if (isinstance(value, str | int) and not
                                             isinstance(value, bool) and TELEGRAM_CHAT.
                                             fullmatch(str(value))) else
    (value, "want a chat's id (a number, -100... for a group) or @channelname"),
    "service": _matching(TWILIO_SID, "a Twilio Messaging Service SID (MG and 32 hex digits)"),
}
# Checks of shared field names that mean something else for a type.
TYPE_CHECKS: dict[str, dict[str, Callable[[Any], Checked]]] = {
    "signal": {"account": phone,
               "to": _listing(signal_recipient, "recipients (+phone numbers, UUIDs, "
                              "u:username.01 or group:GROUP_ID)")},
    "sms": {"account": _matching(TWILIO_SID, "a Twilio Account SID (AC and 32 hex digits)"),
            "to": _listing(phone, "phone numbers in E.164 form (+4915112345678)"),
            "sender": lambda value: (value, "") if isinstance(value, str) and (
                PHONE.fullmatch(value) or SENDER_ID.fullmatch(value)) else
            (value, "want the From number in E.164 form, or an alphanumeric sender ID")},
    "pushover": {"token": _matching(PUSHOVER_KEY, "a Pushover application token "
                                    "(30 letters and digits)")},
    "telegram": {"token": _matching(TELEGRAM_TOKEN, "a bot token as BotFather gives it "
                                    "(digits, ':', letters, digits, '_' and '-'; no line "
                                    "break or space)")},
}

Problem = Callable[[str, str], None]


def finish(kind: str, at: str, entry: dict[str, Any], found: dict[str, Any],
           problem: Problem) -> bool:
    """Fill in ``kind``'s defaults and check what depends on more than one field; False
    when the entry cannot make a channel."""
    if kind in DEFAULT_URLS:
        found.setdefault("url", DEFAULT_URLS[kind])
    if kind == "email":
        security = found.get("security", "starttls")
        found.setdefault("port", {"starttls": 587, "tls": 465, "none": 25}[security])
    if kind == "signal":
        found.setdefault("timeout_s", SIGNAL_TIMEOUT_S)
    if kind == "sms" and ("sender" in entry) == ("service" in entry):
        problem(f"{at}.sender", "an sms channel needs a sender (the From number) or a "
                "service (a Messaging Service SID), not both")
        return False
    if kind == "ntfy" and "url" in found:
        path = urlparse(found["url"]).path.rstrip("/")
        if not path.rpartition("/")[2]:
            problem(f"{at}.url", "want the topic's URL: https://ntfy.sh/TOPIC")
            return False
    if kind == "ntfy" and "token" in entry and "username" in entry:
        problem(f"{at}.token", "an ntfy channel takes a token or a username and password")
        return False
    if kind == "ntfy" and ("username" in entry) != ("password" in entry):
        problem(f"{at}.password", "an ntfy channel's username needs its password")
        return False
    return True
