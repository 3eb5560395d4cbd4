"""Request bodies: strict JSON in, stored bytes out.

A 202 promises PagerDuty will take the event, so what cannot travel faithfully is
refused here with a 400 naming it: NaN and Infinity, numbers that overflow to infinity,
lone surrogates, member names repeated in one object (parsers disagree on which value
wins), and events larger than PagerDuty's limit once stored.
"""

from __future__ import annotations

import json
from typing import Any

from relay import validation
from relay.errors import InvalidEvent
from relay.store import Record

ROUTING_KEY_FIELD = len(',"routing_key":""') + 32  # what the worker adds before sending


def encode(record: Record, at: str, limit: int) -> tuple[bytes, list[str]]:
    """The record as stored (UTF-8 JSON), or the problems that keep it from being stored
    and sent as it came: PagerDuty takes at most ``limit`` bytes per event."""
    try:
        raw = record.encode().encode()
    except (ValueError, UnicodeEncodeError):
        return b"", validation.unstorable_problems(record.event, at) or [
            f"{at or 'body'}: cannot be encoded as JSON"]
    if len(raw) + ROUTING_KEY_FIELD > limit:
        return b"", [f"{at or 'body'}: the event is larger than PagerDuty's limit of "
                     f"{limit} bytes once stored ({len(raw)} bytes)"]
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
        raise InvalidEvent(["body: JSON nested too deeply"]) from None
    if isinstance(body, list):
        if not body:
            raise InvalidEvent(["body: empty list, no event to queue"])
        return body, False
    return [body], True


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

