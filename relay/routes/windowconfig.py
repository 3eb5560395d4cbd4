"""The routes file's ``maintenance`` section: a window (``Window``: its matchers, start
and end) and how an entry is read (``window``; times in ISO 8601, UTC when they name no
zone). Windows added at run time are relay.routes.windows'."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.routes.matchers import Matcher

Problem = Callable[[str, str], None]
FIELDS = {"name", "match", "start", "end"}


@dataclass(frozen=True)
class Window:
    name: str
    matchers: tuple[Matcher, ...]
    start: float  # seconds since the epoch
    end: float
    id: str = ""  # a window added at run time: its id (relay.routes.windows)

    @property
    def key(self) -> str:
        """Which window it is, for its count of triggers held back and its notices: a
        run-time window's id; for one of the routes file, made of its name and times (a
        window whose times change is another window)."""
        if self.id:
            return self.id
        made = hashlib.blake2b(f"{self.name}\x1f{self.start!r}\x1f{self.end!r}".encode(),
                               digest_size=6).hexdigest()
        return f"file-{made}"


def window(at: str, entry: dict[str, Any], name: str | None, matchers: tuple[Matcher, ...],
           problem: Problem) -> Window | None:
    """The window of ``entry`` (at ``at`` in the file; its ``name`` and ``matchers``
    already read), or None; problems told to ``problem``."""
    start, end = moment(f"{at}.start", entry.get("start"), problem), \
        moment(f"{at}.end", entry.get("end"), problem)
    if start is not None and end is not None and end <= start:
        problem(f"{at}.end", "must be after start")
    if name and start is not None and end is not None:
        return Window(name, matchers, start, end)
    return None


def moment(at: str, value: Any, problem: Problem) -> float | None:
    """A date and time (ISO 8601 text, or YAML's timestamp) as seconds since the epoch."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = None
    if not isinstance(value, datetime):
        problem(at, "want a date and time, such as 2026-11-25T22:00:00Z")
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # YAML timestamps without a zone are UTC
    return float(value.timestamp())
