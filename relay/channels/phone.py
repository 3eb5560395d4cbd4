"""What a phone shows: one short line first ("CRIT disk full on db1 [resolved]"), the
limits each provider counts in, and how severities become a push's priority.

SMS: a message is always written in the GSM-7 alphabet and fits one segment of 160
septets (``gsm7``): a character outside it (an emoji, a non-Latin letter) becomes its
base letter when it has one (é stays, ő becomes o) or "?", rather than turning the
whole message into UCS-2, which holds 70 characters a segment, so one emoji in a
summary would cut the line to less than half, or cost a second segment.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from relay.channels.escape import one_line

SHORT = {"critical": "CRIT", "error": "ERR", "warning": "WARN", "info": "INFO"}
STATE_TAGS = {"resolved": "[resolved]", "acknowledged": "[ack]", "change": "[change]"}
SMS_SEPTETS = 160
# GSM 03.38: the basic set (a septet each) and the extension set (two: escape + char)
GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENDED = set("^{}\\[~]|€\f")
LOOKALIKES = {"\u2014": "-", "\u2013": "-", "\u2212": "-", "\u2018": "'", "\u2019": "'",
              "\u201c": '"', "\u201d": '"', "\u2026": "...", "\u00a0": " ", "\u2022": "*",
              "`": "'"}
# ntfy: 1 min, 2 low (no sound), 3 default, 4 high, 5 max (urgent)
NTFY_PRIORITY = {"critical": 5, "error": 4, "warning": 3, "info": 2}
NTFY_TAGS = {"critical": "rotating_light", "error": "red_circle", "warning": "warning",
             "info": "information_source", "resolved": "white_check_mark",
             "acknowledged": "eyes"}
# Pushover: -2 no notification, -1 quiet, 0 normal, 1 high (through quiet hours), 2
# emergency (repeated until acknowledged)
PUSHOVER_PRIORITY = {"critical": 2, "error": 1, "warning": 0, "info": -1}


def headline(values: Mapping[str, Any], sms: bool = False) -> str:
    """One line a person reads on a lock screen: "CRIT disk full on db1 [resolved]";
    ``sms``: in GSM-7, its summary cut so that the whole fits one segment."""
    severity = str(values["severity"])
    mark = SHORT.get(severity, one_line(severity)[:8].upper())
    summary, source = one_line(values["summary"]).strip(), one_line(values["source"]).strip()
    about = summary + (f" on {source}" if source and source not in summary else "")
    tag = STATE_TAGS.get(str(values["state"]), "")
    test = "[test]" if values["test"] else ""
    if sms:
        about = " ".join(gsm7(about).split())
        room = SMS_SEPTETS - septets(" ".join(p for p in (test, mark, tag) if p)) - 1
        about = cut(about, max(room, 8), septets, "...")
    return " ".join(part for part in (test, mark, about, tag) if part)


def urgent(severity: str, state: str) -> bool:
    """Whether a message calls for the severity's own priority: a trigger does; its
    acknowledge, resolve or a change event does not (it must not wake anyone)."""
    return state == "triggered" and severity in SHORT


def pushover_priority(severity: str, state: str) -> int:
    return PUSHOVER_PRIORITY[severity] if urgent(severity, state) else -1


def ntfy_priority(severity: str, state: str) -> int:
    return NTFY_PRIORITY[severity] if urgent(severity, state) else 2


def digest_severity(by_severity: Mapping[str, int]) -> str:
    """A digest's priority is never above "warning": it tells of what happened, and what
    needed waking someone went through (``min_severity`` of quiet hours)."""
    worst = next((name for name in SHORT if by_severity.get(name)), "info")
    return "warning" if worst in ("critical", "error") else "info"


def utf16(text: str) -> int:
    """``text``'s length as Telegram and Discord count it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, limit: int, size: Any = len, mark: str = "…") -> str:
    """``text`` cut (with ``mark``) so that ``size`` of it is at most ``limit``."""
    if size(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the mark
        middle = (low + high + 1) // 2
        if size(text[:middle] + mark) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low] + mark


def lines_within(lines: Iterable[str], limit: int, size: Any = len) -> list[str]:
    """The first of ``lines`` that fit in ``limit`` joined by newlines; the first one
    cut when even it alone is too long; the rest left out (never cut mid-line, so
    markup on a line stays whole)."""
    kept: list[str] = []
    used = 0
    for line in lines:
        extra = size(line) + (1 if kept else 0)
        if used + extra > limit:
            if not kept:
                kept.append(cut(line, limit, size))
            break
        kept.append(line)
        used += extra
    return kept


def gsm7(text: str) -> str:
    """``text`` in the GSM-7 alphabet, one line: each other character its base letter
    (NFKD, accents dropped) when that is in it, else "?"."""
    found = []
    for char in one_line(text):
        if char in GSM_BASIC or char in GSM_EXTENDED:
            found.append(char)
            continue
        if char in LOOKALIKES:
            found.append(LOOKALIKES[char])
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char)
                       if not unicodedata.combining(c))
        found.append(base if base and all(c in GSM_BASIC for c in base) else "?")
    return "".join(found).replace("\r", " ").replace("\n", " ")


def septets(text: str) -> int:
    return sum(2 if char in GSM_EXTENDED else 1 for char in text)


def sms(text: str) -> str:
    """``text`` as one SMS segment: GSM-7, at most 160 septets, cut with "..."."""
    return cut(" ".join(gsm7(text).split()), SMS_SEPTETS, septets, "...")
