"""The stream's tail: the history entries the record in PostgreSQL may not hold yet.

Every entry before the export group's frontier is committed (an exporter acknowledges an
entry only after its COMMIT) or was lost from the record (counted in
``Names.history_export``); from the frontier on (the oldest entry an exporter holds,
else the first after the group's last delivered one: the lag's definition,
``relay.history.pg.lag``) an entry may be committed or not, so the readers take those from
the stream and drop the steps PostgreSQL holds too (a step is named by its entry and place).
No group (no exporter ever ran): the whole stream is the tail.

Read the frontier BEFORE the record, and the tail before the record too: an entry below
the frontier was committed before the record is read; one at or above it is read here
(or, trimmed meanwhile, was committed before the record is read, or is lost).
"""

from __future__ import annotations

from typing import Any

import redis

from relay.history.entries import Step, steps_of
from relay.names import Names

CHUNK = 1000


def frontier(client: redis.Redis, names: Names) -> str:
    """XRANGE's lower bound of the tail: "-" (all), an entry id, or "(" + one (after it)."""
    try:
        groups: list[dict[str, Any]] = client.xinfo_groups(names.history)
    except redis.ResponseError:  # no stream yet
        return "-"
    group = next((g for g in groups if _text(g.get("name")) == names.history_group), None)
    if group is None:
        return "-"
    if int(group.get("pending") or 0):
        oldest = _text(client.xpending(names.history, names.history_group).get("min"))
        if oldest:
            return oldest
    last = _text(group.get("last-delivered-id")) or "0-0"
    return "-" if last == "0-0" else "(" + last


class Tail(list[Step]):
    """The tail's steps; ``cut``: entries older than those read were left out (``most``)."""

    cut: bool = False


def tail(client: redis.Redis, names: Names, start: str, until_ms: int | None = None,
         most: int = 0) -> Tail:
    """The steps in the entries from ``start`` on (before ``until_ms``), oldest first;
    at most ``most`` entries when given (the newest ones: a record far behind; ``cut``
    says when there were more)."""
    high = str(until_ms - 1) if until_ms else "+"
    if until_ms is not None and until_ms <= 0:
        return Tail()
    found: list[tuple[str, dict[str, Any]]] = []
    while True:
        chunk: list[Any] = list(client.xrevrange(names.history, max=high, min=start,
                                                 count=CHUNK) or [])
        found += chunk
        if len(chunk) < CHUNK or (most and len(found) >= most):
            break
        high = "(" + _text(chunk[-1][0])
    steps = Tail()
    if most and len(found) >= most:
        steps.cut = len(found) > most or bool(client.xrevrange(
            names.history, max="(" + _text(found[most - 1][0]), min=start, count=1))
        found = found[:most]
    for entry_id, fields in reversed(found):
        steps += steps_of(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
    return steps


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
