"""A ping's body as it is stored: text whose JSON, as Redis's cjson writes it in the
pings list, takes at most a given number of bytes (promise 8: what a check keeps is
bounded by what is stored, not by the bytes that came).

cjson writes a character as its UTF-8 bytes, except ``"``, ``\\``, ``/``, newline, tab
and carriage return (two bytes each: ``\\n``) and the other control characters (six:
``\\u0000``), which are replaced here by U+FFFD (three); bytes that are not UTF-8 are
replaced by U+FFFD too. So no character costs more than three bytes, and the stored
body is cut where its JSON would pass the limit.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TWO = ('"', "\\", "/", "\n", "\t", "\r")  # written with a backslash: two bytes


def stored_size(text: str) -> int:
    """The bytes ``text`` takes in cjson's JSON (without the quotes), control
    characters other than newline, tab and carriage return already replaced."""
    return len(text.encode()) + sum(text.count(char) for char in _TWO)


def cut(body: bytes, limit: int) -> str:
    """The first characters of ``body`` whose JSON takes at most ``limit`` bytes."""
    # a character never takes fewer bytes in JSON than it came as: what came after the
    # first ``limit`` bytes (and a character cut there, +3) can never be kept
    text = _CONTROL.sub("\ufffd", body[:limit + 3].decode("utf-8", errors="replace"))
    if stored_size(text) <= limit:
        return text
    low, high = 0, min(len(text), limit)  # the longest prefix that fits: low
    while low < high:
        middle = (low + high + 1) // 2
        if stored_size(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]
