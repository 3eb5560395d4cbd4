"""A digest: one message that stands for many notices to one channel, gathered while the
channel was muted (quiet hours), during its digest period, while its breaker was open, or
while it was behind (its bound of waiting jobs reached: ``relay.channels.decide``)
(``relay.channels.gather``). It counts every notice it stands for, by severity and by
state, and keeps the first ``LINES_KEPT`` of them as short lines; each channel type
writes it in its own form (``relay.channels.messages.digest_message``) from ``outline``,
the one definition of what a digest says.

Its JSON is an RQ job's argument: at most ``DIGEST_BYTES`` whatever the senders sent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from relay.channels.notice import Notice, fit, payload_of

LINES_KEPT = 50  # lines a digest keeps; the rest are counted ("and 37 more")
LINE_SUMMARY_BYTES = 160
LINE_FIELD_BYTES = 96
DIGEST_BYTES = LINES_KEPT * (LINE_SUMMARY_BYTES + 3 * LINE_FIELD_BYTES + 160) + 2048
REASONS = ("muted", "digest", "breaker", "backlog")
VERSION = 1  # of the stored line and digest formats


@dataclass(frozen=True)
class Line:
    """One notice in a digest."""

    state: str  # triggered, acknowledged, resolved, change, maintenance
    severity: str
    summary: str
    dedup_key: str = ""
    source: str = ""  # payload.source
    route: str = ""
    accepted_ms: int = 0

    @classmethod
    def of(cls, notice: Notice) -> Line:
        payload = payload_of(notice.event)
        return cls(state=notice.state, severity=fit(notice.severity, 16),
                   summary=fit(notice.summary or str(payload.get("summary", "")),
                               LINE_SUMMARY_BYTES),
                   dedup_key=fit(str(notice.event.get("dedup_key", "")), LINE_FIELD_BYTES),
                   source=fit(str(payload.get("source", "")), LINE_FIELD_BYTES),
                   route=fit(notice.route, LINE_FIELD_BYTES), accepted_ms=notice.accepted_ms)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Line:
        return cls(**data)


@dataclass(frozen=True)
class Digest:
    """What one digest message says: ``total`` notices from ``since_ms`` to ``until_ms``
    (accepted), counted ``by_severity`` and ``by_state``, the first of them as ``lines``."""

    id: str  # unique per channel: its RQ job's id is made of it
    channel: str
    reason: str  # one of REASONS
    since_ms: int
    until_ms: int
    total: int
    by_severity: dict[str, int] = field(default_factory=dict)
    by_state: dict[str, int] = field(default_factory=dict)
    lines: tuple[Line, ...] = ()
    test: bool = False

    @property
    def more(self) -> int:
        """Notices counted but not listed."""
        return max(0, self.total - len(self.lines))

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["lines"] = [line.to_json() for line in self.lines]
        found["v"] = VERSION
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Digest:
        data = dict(data)
        if data.pop("v", VERSION) != VERSION:
            raise ValueError("a digest of another version")
        data["lines"] = tuple(Line.from_json(line) for line in data.get("lines", ()))
        return cls(**data)


WHY = {"muted": "held in quiet hours", "digest": "gathered", "breaker": "held while the "
       "channel failed", "backlog": "gathered while the channel was behind"}


def outline(digest: Digest, shown: int = 20) -> tuple[str, list[str], str]:
    """(headline, up to ``shown`` lines, tail): "12 notices held in quiet hours
    (22:00-07:00 UTC): 3 critical, 9 warning; 8 triggered, 4 resolved", one line a
    notice "STATE [severity] summary (source)", and "and 37 more" ("" when none)."""
    since = datetime.fromtimestamp(digest.since_ms / 1000, UTC).strftime("%H:%M")
    until = datetime.fromtimestamp(digest.until_ms / 1000, UTC).strftime("%H:%M")
    severities = ", ".join(f"{n} {name}" for name, n in sorted(
        digest.by_severity.items(), key=lambda item: _rank(item[0])) if n)
    states = ", ".join(f"{n} {name}" for name, n in sorted(digest.by_state.items()) if n)
    test = "[test] " if digest.test else ""
    headline = (f"{test}{digest.total} notice{'s' if digest.total != 1 else ''} "
                f"{WHY.get(digest.reason, digest.reason)} ({since}-{until} UTC)"
                + (f": {severities}" if severities else "") + (f"; {states}" if states else ""))
    lines = [f"{line.state.upper()} [{line.severity}] {line.summary}"
             + (f" ({line.source})" if line.source else "") for line in digest.lines[:shown]]
    hidden = digest.total - len(lines)
    return headline, lines, f"and {hidden} more" if hidden > 0 else ""


def _rank(severity: str) -> int:
    order = ("critical", "error", "warning", "info")
    return order.index(severity) if severity in order else len(order)
