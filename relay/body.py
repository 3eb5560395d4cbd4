"""Request bodies: strict JSON in, stored bytes out.

A 202 promises PagerDuty will take the event, so what cannot travel faithfully is
refused here with a 400 naming it: NaN and Infinity, numbers that overflow to infinity,
lone surrogates, member names repeated in one object (parsers disagree on which value
wins), and events larger than PagerDuty's limit once stored.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from relay import validation
from relay.errors import InvalidEvent
from relay.store import MERGE_ROOM, Record

ROUTING_KEY_FIELD = len(',"routing_key":""') + 32  # what the worker adds before sending
# Levels an event may nest (the event is 1, its payload 2, custom_details 3): far below
# what every later stage reads and writes (Python's encoders and templates, Redis's
# cjson at 1000), so whatever is accepted can be stored, sent and shown.
MAX_DEPTH = 64
# Events one request may carry (PagerDuty takes one): refused whole beyond it, before any
# event is looked at. A 511 KB request of tiny events is about 6,000 of them.
MAX_EVENTS = 1000
_SKELETON = bytes(b for b in range(256) if b not in b'[]{}"')  # deleted: all but these
_STRINGS = re.compile(rb'"[^"]*"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def encode(record: Record, at: str, limit: int) -> tuple[bytes, list[str]]:
    """The record as stored (UTF-8 JSON), or the problems that keep it from being stored
    and sent as it came: PagerDuty takes at most ``limit`` bytes per event."""
    try:
        raw = record.encode().encode()
    except (ValueError, UnicodeEncodeError):
        return b"", validation.unstorable_problems(record.event, at) or [
            f"{at or 'body'}: cannot be encoded as JSON"]
    if len(raw) + ROUTING_KEY_FIELD + MERGE_ROOM > limit:  # what the worker may add
        return b"", [f"{at or 'body'}: the event is larger than PagerDuty's limit of "
                     f"{limit} bytes once stored ({len(raw)} bytes, and the relay keeps "
                     f"{ROUTING_KEY_FIELD + MERGE_ROOM} for its routing key and a count "
                     "of merged repeats)"]
    return raw, []


def parse_body(mimetype: str, content_type: str | None, raw: bytes) -> tuple[list[Any], bool]:
    """Return (events, single): the body's events, and whether it was one object."""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        got = content_type or "none"
        raise InvalidEvent([f"body: Content-Type must be application/json, got {got}"])
    try:
        body = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_unique)
    except DuplicateName as exc:
        raise InvalidEvent([f"body: {exc}"]) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent([f"body: malformed JSON: {exc}"]) from None
    except RecursionError:
        raise InvalidEvent([TOO_DEEP]) from None
    if depth(raw) > MAX_DEPTH + isinstance(body, list):  # a list's events may nest as deep
        raise InvalidEvent([TOO_DEEP])
    if isinstance(body, list):
        if not body:
            raise InvalidEvent(["body: empty list, no event to queue"])
        if len(body) > MAX_EVENTS:
            raise InvalidEvent([too_many(len(body))])
        return body, False
    return [body], True


def too_many(count: int, what: str = "") -> str:
    return f"body: at most {MAX_EVENTS} events per request, got {count}{what}"


TOO_DEEP = (f"body: JSON nested deeper than {MAX_DEPTH} levels (an event is 1, its payload "
            "2, custom_details 3)")


def depth(raw: bytes) -> int:
    """How deep valid JSON text nests, without a Python step per byte or per value:
    escapes and then all but brackets and quotes are cut away (C speed), then strings
    with the brackets they held, and the rest is counted up and down."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return MAX_DEPTH  # cannot be deeper (the common case: one event)
    # escapes pair from the left: "\\" first, then an escaped quote is the only one left
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = raw.translate(None, _SKELETON)
    # two quotes side by side bound an empty string or an empty gap between two strings:
    # dropping them leaves every bracket outside strings where it was
    skeleton = _STRINGS.sub(b"", skeleton.replace(b'""', b""))
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose member names are unique: a repeated name is ambiguous (parsers
    disagree on which value wins), so the event is refused rather than guessed at."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateName(f"member {name!r} appears twice in one object")
            seen.add(name)
    return obj


class DuplicateName(ValueError):
    pass

