"""Matchers in Alertmanager's syntax, over an event's fields.

    severity="critical"    equal             source!="db1"       not equal
    source=~"db[0-9]+"     regex, anchored   class!~"noise|test" regex does not match
    severity>="error"      at least (severity only: info < warning < error < critical)

A value is double-quoted (``\\"`` and ``\\\\`` escaped; any other backslash is kept, for
regular expressions such as ``"db\\d+"``) or a bare word. Fields: the
payload's ``severity``, ``source``, ``component``, ``group``, ``class``, ``summary``,
``custom_details.<path>`` (dots walk into objects), the event's ``event_action`` and
``dedup_key``, and who sent it: ``sender`` (the source's name, ``routing-key`` or
``anonymous``) and ``adapter`` (``events-v2``, ``alertmanager``, ...). As in
Alertmanager, a field that is absent is the empty string. A regular expression reads
the first ``MATCH_CHARS`` (1024) characters of a field; = and != read all of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("info", "warning", "error", "critical")
PAYLOAD_FIELDS = ("severity", "source", "component", "group", "class", "summary")
EVENT_FIELDS = ("event_action", "dedup_key")
CONTEXT_FIELDS = ("sender", "adapter")
# A regular expression reads at most this much of a field (PagerDuty's own cap on a
# summary): an operator's pattern such as ".*a.*b.*" is quadratic in what it reads, and
# a sender controls how long source, component, group, class and custom_details are.
MATCH_CHARS = 1024
_SYNTAX = re.compile(
    r'^\s*(?P<field>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>=~|!~|!=|>=|=)\s*'
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]*)\s*$'
)


@dataclass(frozen=True)
class Matcher:
    field: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def __str__(self) -> str:
        return f"{self.field}{self.op}{json.dumps(self.value)}"

    def holds(self, event: dict[str, Any], context: dict[str, str]) -> bool:
        seen = field_value(self.field, event, context)
        if self.op == "=":
            return seen == self.value
        if self.op == "!=":
            return seen != self.value
        if self.op == ">=":
            rank = SEVERITIES.index(seen) if seen in SEVERITIES else -1
            return rank >= SEVERITIES.index(self.value)
        assert self.regex is not None
        found = self.regex.fullmatch(seen[:MATCH_CHARS]) is not None
        return found if self.op == "=~" else not found


def parse(text: str) -> Matcher:
    """One matcher; ValueError says what is wrong with it."""
    found = _SYNTAX.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r} is not a matcher (want field=\"value\", with =, !=, =~, "
                         "!~ or, for severity, >=)")
    name, op, raw = found["field"], found["op"], found["value"]
    value = re.sub(r'\\(["\\])', r"\1", raw[1:-1]) if raw.startswith('"') else raw
    known = name in PAYLOAD_FIELDS + EVENT_FIELDS + CONTEXT_FIELDS
    if not known and not (name.startswith("custom_details.") and len(name) > 15):
        raise ValueError(f"{text!r}: unknown field {name!r} (use "
                         + ", ".join(PAYLOAD_FIELDS + EVENT_FIELDS + CONTEXT_FIELDS)
                         + " or custom_details.<path>)")
    if op == ">=" and (name != "severity" or value not in SEVERITIES):
        raise ValueError(f"{text!r}: >= takes severity and one of " + ", ".join(SEVERITIES))
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: bad regular expression: {exc}") from None
    return Matcher(name, op, value, regex)


def field_value(name: str, event: dict[str, Any], context: dict[str, str]) -> str:
    if name in CONTEXT_FIELDS:
        return context.get(name, "")
    if name in EVENT_FIELDS:
        return _text(event.get(name))
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return ""
    if name in PAYLOAD_FIELDS:
        return _text(payload.get(name))
    value: Any = payload.get("custom_details")
    for part in name.split(".")[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def all_hold(matchers: tuple[Matcher, ...], event: dict[str, Any],
             context: dict[str, str]) -> Matcher | None:
    """The first matcher that does not hold, or None when all hold."""
    for matcher in matchers:
        if not matcher.holds(event, context):
            return matcher
    return None
