"""What the views show of the checks (``pd-relay status`` and ``--json``, /metrics, the
dashboard's Heartbeats pages): one row per check from ``store.Heartbeats.states``, its
times made ages on Redis's clock, and the note when the evaluator gave every check one
grace after the relay's own downtime. Reads only; the family's store writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from relay.heartbeats.model import Check, CheckState
from relay.heartbeats.schedule import shown

PINGS_SHOWN = 20  # a check's page lists its last pings (all the store keeps: 10)
COLUMNS = (("name", "HEARTBEAT"), ("state", "STATE"), ("last_ping", "LAST PING"),
           ("next_due", "NEXT DUE"), ("down_since", "DOWN SINCE"), ("schedule", "SCHEDULE"))


class StateReader(Protocol):
    """What the views need of ``relay.heartbeats.store.Heartbeats``."""

    def states(self, checks: Sequence[Check]) -> list[CheckState]: ...

    def recent_pings(self, name: str, count: int) -> list[dict[str, Any]]: ...

    def stored_checks(self) -> list[Check]: ...

    def gap(self) -> dict[str, Any]: ...


class Report:
    """The checks as the views see them: the routes file's (``file_checks()``, the file in
    force) then those added at run time (read from Redis at each look), their rows, one
    check's page."""

    def __init__(self, client: Any, reader: StateReader,
                 file_checks: Callable[[], Sequence[Check]]) -> None:
        self.client = client
        self.reader = reader
        self.file_checks = file_checks

    def checks(self) -> list[Check]:
        found = list(self.file_checks())
        taken = {check.name for check in found}
        added = [c for c in self.reader.stored_checks() if c.name not in taken]
        return found + sorted(added, key=lambda check: check.name)

    def rows(self, checks: Sequence[Check] | None = None) -> list[dict[str, Any]]:
        return read(self.client, self.reader, self.checks() if checks is None else checks)

    def gap(self, checks: Sequence[Check]) -> dict[str, Any] | None:
        """The relay's last downtime while its grace still holds (or while open), else
        None: ``gap_note`` says it."""
        return recent_gap(self.reader.gap(), checks, redis_now(self.client))

    def one(self, name: str, pings: int = PINGS_SHOWN
            ) -> tuple[Check, dict[str, Any], list[dict[str, Any]]] | None:
        """A check, its row and its last ``pings`` (newest first); None if no such check."""
        found = [check for check in self.checks() if check.name == name]
        if not found:
            return None
        [row] = read(self.client, self.reader, found)
        return found[0], row, self.reader.recent_pings(name, pings)


def schedule(check: Check) -> str:
    """``every 5m`` or ``cron '0 3 * * *' Europe/Berlin``, as ``pd-relay heartbeat list``
    says it."""
    if check.cron is not None:
        return f"cron {check.cron!r} {check.tz}"
    return f"every {shown(check.period_s or 0)}"


TIMES = ("last_ping_at", "expected_at", "down_at", "since", "down_since")


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row for ``status --json``: ``heartbeat list --json``'s fields and values (times
    ISO 8601 UTC), with the ages and ``down_since`` besides."""
    return {name: iso(value) if name in TIMES else value for name, value in row.items()}


def gap_json(gap: dict[str, Any] | None) -> dict[str, Any] | None:
    """The relay's gap for ``status --json`` (``heartbeat list --json``'s relay_gap)."""
    if gap is None:
        return None
    return {name: iso(value) if name in ("at", "since") else value
            for name, value in gap.items()}


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def rows(checks: Sequence[Check], states: Sequence[CheckState], now: float
         ) -> list[dict[str, Any]]:
    """One plain row per check, in the checks' order (``now``: seconds, Redis's clock).
    Ages and ``next_due_in_seconds`` (negative: overdue) are rounded to 0.1 s."""
    by_name = {state.name: state for state in states}
    found = []
    for check in checks:
        state = by_name.get(check.name) or CheckState(check.name, "new")
        found.append({
            "name": check.name,
            "state": state.state,
            "origin": check.origin,
            "schedule": schedule(check),
            "period_s": check.period_s, "cron": check.cron, "tz": check.tz,
            "grace_s": check.grace_s,
            "severity": check.severity,
            "keys": list(check.keys), "channels": [use.name for use in check.channels],
            "sources": None if check.sources is None else list(check.sources),
            "watchdog": [str(matcher) for matcher in check.watchdog],
            "last_ping_at": state.last_ping_at,
            "last_signal": state.last_signal,
            "expected_at": state.expected_at,
            "down_at": state.down_at,
            "since": state.since,
            "outages": state.outages,
            "last_ping_age_seconds": _ago(now, state.last_ping_at),
            "next_due_in_seconds": (None if state.expected_at is None
                                    else round(state.expected_at - now, 1)),
            "down_since": state.since if state.state == "down" else None,
        })
    return found


def read(client: Any, reader: StateReader, checks: Sequence[Check]) -> list[dict[str, Any]]:
    """The rows of ``checks``, aged on Redis's clock (``client.time()``)."""
    if not checks:
        return []
    return rows(checks, reader.states(checks), redis_now(client))


REASONS = {"evaluator": "no evaluation ran", "ingress": "no ingress node could take pings"}


def recent_gap(gap: dict[str, Any], checks: Sequence[Check], now: float
               ) -> dict[str, Any] | None:
    """``gap`` (store.Heartbeats.gap) when it still matters: open, or the longest grace
    of ``checks`` has not passed since its grace began."""
    if not gap or not checks:
        return None
    began = gap.get("since") or gap.get("at") or 0.0
    if gap.get("open") or now - began <= max(check.grace_s for check in checks):
        return gap
    return None


def gap_note(gap: dict[str, Any] | None) -> str:
    """One line for ``pd-relay status`` and the dashboard; empty for none."""
    if not gap:
        return ""
    why = REASONS.get(str(gap.get("reason")), str(gap.get("reason") or "the relay was down"))
    at = _stamp(gap.get("at") or 0)
    if gap.get("open"):
        return (f"HEARTBEATS: no ingress node can take pings now (noticed {at}): no check "
                "goes down until one is back, and then not within one grace")
    if gap.get("reason") == "start":
        return (f"HEARTBEATS: the evaluation started {at}: every check got one grace from "
                "then before it may go down")
    return (f"HEARTBEATS: the relay was away {span(gap.get('gap_s') or 0)} ({why}; noticed "
            f"{_stamp(gap.get('at') or 0)}): every check got one grace from "
            f"{_stamp(gap.get('since') or gap.get('at') or 0)} before it may go down")


def redis_now(client: Any) -> float:
    """Redis's clock in seconds (the checks' times are on it), else this host's."""
    try:
        seconds, micros = client.time()
    except (AttributeError, TypeError, ValueError):
        return time.time()
    return int(seconds) + int(micros) / 1e6


def _ago(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 1)


def span(seconds: float) -> str:
    """45s, 4m10s, 2h5m, 3d4h (whole seconds, the two largest units)."""
    s = int(round(seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                      ("m", 60, "s", 1)):
        if s >= size:
            rest = s % size // sub_size
            return f"{s // size}{unit}{rest}{sub}" if rest else f"{s // size}{unit}"
    return f"{s}s"


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def cells(row: dict[str, Any]) -> dict[str, str]:
    """A row's text for the table (and the dashboard's list)."""
    age = row["last_ping_age_seconds"]
    due = row["next_due_in_seconds"]
    if due is None:
        next_due = "–"
    elif due >= 0:
        next_due = f"in {span(due)}"
    else:
        next_due = f"{span(-due)} overdue"
    return {
        "name": row["name"] + ("" if row["origin"] == "file" else f" ({row['origin']})"),
        "state": row["state"].upper() if row["state"] == "down" else row["state"],
        "last_ping": "never" if age is None else f"{span(age)} ago ({row['last_signal']})",
        "next_due": next_due,
        "down_since": "–" if row["down_since"] is None else _stamp(row["down_since"]),
        "schedule": f"{row['schedule']}, grace {shown(row['grace_s'])}",
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The HEARTBEATS table of ``pd-relay status``; empty with no checks."""
    if not rows:
        return ""
    table = [[title for _, title in COLUMNS]]
    table += [[cells(row)[name] for name, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)
