"""What a maintenance notice says: the window as told (``Seen``), its one line
(``summary``: added, started, ended or expired early, with what it held back) and the
notice the channels render (``notice``). Who is told, and when, is
relay.channels.maintenance's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.channels.notice import Notice, fit
from relay.routes.matchers import Matcher, parse

SAID = {"added": "added", "started": "started", "ended": "ended",
        "expired": "expired early"}


@dataclass(frozen=True)
class Seen:
    """A window as its notices tell of it."""

    key: str  # relay.routes.config.Window.key
    name: str
    matchers: tuple[Matcher, ...]
    start: float
    end: float
    comment: str = ""
    planned_end: float | None = None  # expired early: when it was to end

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "match": [str(m) for m in self.matchers],
                "start": self.start, "end": self.end, "comment": self.comment,
                "planned_end": self.planned_end}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Seen:
        return cls(str(data["key"]), str(data["name"]),
                   tuple(parse(m) for m in data.get("match", ())), float(data["start"]),
                   float(data["end"]), str(data.get("comment", "")), data.get("planned_end"))



def at(moment: float, now: float) -> str:
    """A time for a person: 23:00 UTC (seconds when not whole minutes; the date when
    not today)."""
    when, today = datetime.fromtimestamp(moment, UTC), datetime.fromtimestamp(now, UTC)
    clock = when.strftime("%H:%M:%S" if when.second else "%H:%M")
    return (clock if when.date() == today.date() else f"{when:%Y-%m-%d} {clock}") + " UTC"


def summary(window: Seen, event: str, held: int, now: float) -> str:
    """What the notice says, in one line."""
    what = ("triggers matching " + ", ".join(str(m) for m in window.matchers)
            if window.matchers else "every trigger")
    head = f"Maintenance window {window.name} {SAID[event]}"
    if event == "added":
        text = f"{head}: will hold {what} from {at(window.start, now)} to " \
               f"{at(window.end, now)}"
    elif event == "started":
        text = f"{head}: holds {what} until {at(window.end, now)}"
    else:
        planned = "" if window.planned_end is None else \
            f" (it was to end at {at(window.planned_end, now)})"
        text = f"{head}{planned}: it held back {held} trigger{'s' if held != 1 else ''}"
    return text + (f" ({window.comment})" if window.comment else "")


def notice(window: Seen, event: str, held: int, now: float) -> Notice:
    """The notice of one event of one window (``action`` "maintenance"; its id, and so
    its jobs' ids, made of the window and the event)."""
    details: dict[str, Any] = {
        "window": window.name, "event": SAID[event], "match": [str(m) for m in window.matchers],
        "start": _iso(window.start), "end": _iso(window.end)}
    if window.planned_end is not None:
        details["planned_end"] = _iso(window.planned_end)
    if event in ("ended", "expired"):
        details["held"] = held
    if window.comment:
        details["comment"] = fit(window.comment, 256)
    text = fit(summary(window, event, held, now), 1024)
    return Notice(id=f"maintenance-{window.key}-{event}", action="maintenance",
                  event={"event_action": "maintenance", "payload": {
                      "summary": text, "severity": "info", "custom_details": details}},
                  accepted_ms=int(now * 1000), severity="info")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
