"""A run-time check as stored (JSON in Names.heartbeats, ``"v": 1``) and a page as the
outbox holds it (JSON written by the Lua: times in ms, Redis's clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from relay.heartbeats.config import label_matcher, name_problem
from relay.heartbeats.model import Check, Page
from relay.heartbeats.schedule import cron_problem, duration, zone
from relay.routes.channels import Use
from relay.severity import LEVELS


def check_to_json(check: Check, version: int) -> str:
    return json.dumps({
        "v": version, "name": check.name, "grace_s": check.grace_s,
        "period_s": check.period_s, "cron": check.cron, "tz": check.tz,
        "severity": check.severity, "summary": check.summary, "keys": list(check.keys),
        "channels": [{"name": u.name, "min_severity": u.min_severity,
                      "template": u.template} for u in check.channels],
        "sources": None if check.sources is None else list(check.sources),
        "watchdog": [str(m) for m in check.watchdog]}, separators=(",", ":"))


def check_from_json(raw: str, version: int) -> Check:
    """ValueError (or KeyError, TypeError, AttributeError: JSON but no object) for a
    record this release does not read, or one out of the ranges ``add`` checks (a period
    or grace from 1 s to 366 d, a zone, a cron schedule, a name, a severity): a hand-made
    or damaged record must not make every ping of that check fail."""
    found: dict[str, Any] = json.loads(raw)
    if found.get("v") != version:
        raise ValueError(f"format {found.get('v')!r}, this release reads {version}")
    sources = found["sources"]
    check = Check(
        name=str(found["name"]), grace_s=float(found["grace_s"]),
        period_s=None if found["period_s"] is None else float(found["period_s"]),
        cron=found["cron"], tz=str(found["tz"]), severity=str(found["severity"]),
        summary=str(found["summary"]), keys=tuple(map(str, found["keys"])),
        channels=tuple(Use(u["name"], u.get("min_severity"), u.get("template"))
                       for u in found["channels"]),
        sources=None if sources is None else tuple(map(str, sources)),
        watchdog=tuple(label_matcher(text) for text in found["watchdog"]), origin="cli")
    _in_range(check)
    return check


def _in_range(check: Check) -> None:
    if why := name_problem(check.name):
        raise ValueError(f"name: {why}")
    if duration(check.grace_s) != check.grace_s:
        raise ValueError(f"grace_s {check.grace_s!r}: want 1 s to 366 d")
    if (check.period_s is None) == (check.cron is None):
        raise ValueError("want exactly one of period_s and cron")
    if check.period_s is not None and duration(check.period_s) != check.period_s:
        raise ValueError(f"period_s {check.period_s!r}: want 1 s to 366 d")
    if zone(check.tz) is None:
        raise ValueError(f"tz {check.tz[:40]!r}: no such time zone")
    if check.cron is not None and (why := cron_problem(check.cron, check.tz)):
        raise ValueError(f"cron: {why}")
    if check.severity not in LEVELS:
        raise ValueError(f"severity {check.severity[:20]!r}: want one of {', '.join(LEVELS)}")


def iso(ms: Any) -> str | None:
    """A time of the Lua (ms, or '') as ISO 8601 UTC."""
    if ms in ("", None):
        return None
    moment = datetime.fromtimestamp(int(ms) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page_from_json(raw: str) -> Page:
    """A page of the outbox, its details as the incident's custom_details: check,
    reason, last_ping_at, expected_at (ISO 8601), late_by_s, last_body (first KB),
    exit_status."""
    found = json.loads(raw)
    at = int(found["at"])
    expected = found.get("expected", "")
    late = max(0.0, (at - int(expected)) / 1000) if expected not in ("", None) else None
    status = found.get("exit_status", "")
    details: dict[str, object] = {
        "check": found["name"],
        "reason": found.get("reason", ""), "last_ping_at": iso(found.get("last_ping")),
        "expected_at": iso(expected), "late_by_s": late,
        "last_body": found.get("last_body", ""),
        "exit_status": None if status in ("", None) else int(status)}
    return Page(name=str(found["name"]), action=str(found["action"]),
                outage=int(found["outage"]), reason=str(found.get("reason", "")),
                at=at / 1000, details=details)
