"""How far the record in PostgreSQL is behind the stream: the one definition the metrics,
the self-check, ``status`` and the bench share.

The lag is the age of the oldest history entry no exporter has committed yet: the oldest
entry an exporter holds (the group's pending entries: read, not yet acknowledged) or else
the first entry after the group's last delivered one; 0 when every entry is exported.
None when there is no export group (no exporter ever ran: nothing to say).
"""

from __future__ import annotations

from typing import Any

import redis

from relay.names import Names


def lag_ms(client: redis.Redis, names: Names, now_ms: int) -> int | None:
    """The lag in milliseconds (at most four O(1) or O(log n) calls)."""
    try:
        groups: list[dict[str, Any]] = client.xinfo_groups(names.history)
    except redis.ResponseError:  # no stream yet
        return None
    group = next((g for g in groups if _text(g.get("name")) == names.history_group), None)
    if group is None:
        return None
    oldest: str | None = None
    if int(group.get("pending") or 0):
        summary = client.xpending(names.history, names.history_group)
        oldest = _text(summary.get("min")) or None
    if oldest is None:
        last = _text(group.get("last-delivered-id")) or "0-0"
        after = client.xrange(names.history, min="(" + last, max="+", count=1)
        oldest = _text(after[0][0]) if after else None
    if oldest is None:
        return 0
    return max(0, now_ms - int(oldest.split("-")[0]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
