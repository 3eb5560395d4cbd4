"""What the record in PostgreSQL says of itself, read from Redis only (so ``status``,
``/metrics`` and the self-check answer while PostgreSQL is down): where it is (the DSN,
password masked), how far behind the stream it is (``relay.history.pg.lag``; no exporter ever
ran: the age of the stream's oldest entry, as nothing of it is in the record), how many
entries were exported, and how many were lost from it (trimmed from the stream by its
caps before any exporter read them: ``Names.history_export``'s ``lost``).

The self-check's memory of the lost count (``lost_seen``, and ``lost_grew_ms``: when it
last grew) lives in the same hash, so that "lost is growing" is one answer for every
node's check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from relay.history.pg.lag import lag_ms
from relay.names import Names
from relay.settings import Settings


@dataclass(frozen=True)
class RecordReport:
    dsn: str  # masked
    lag_s: float | None  # None: nothing to export yet and no exporter ever ran
    exported: int
    lost: int
    last: str  # the newest exported entry's id
    at_ms: int  # when it was exported
    lost_grew_ms: int = 0  # when the self-check last saw ``lost`` grow (0: never)
    exporter_ran: bool = True  # False: no export group (no exporter ever started)

    def as_json(self) -> dict[str, Any]:
        return {"dsn": self.dsn, "lag_seconds": self.lag_s, "exported": self.exported,
                "lost": self.lost, "last": self.last or None, "at_ms": self.at_ms or None,
                "exporter_ran": self.exporter_ran}

    def line(self) -> str:
        """One line for ``status``."""
        lag = "" if self.lag_s is None else f"lag {self.lag_s:.1f} s"
        if not self.exporter_ran:
            lag += (" (" if lag else "") + "no exporter has run yet" + (")" if lag else "")
        text = (f"HISTORY in PostgreSQL {self.dsn}: {lag}, {self.exported} entries "
                f"exported, {self.lost} lost from the record")
        return text + (" (trimmed by the stream's caps before export)" if self.lost else "")


def read(client: redis.Redis, names: Names, settings: Settings,
         now_ms: int) -> RecordReport | None:
    """The record's figures; None when the relay keeps no record (no DSN)."""
    if not settings.history_dsn:
        return None
    lag = lag_ms(client, names, now_ms)
    ran = lag is not None
    if lag is None:  # no exporter ever ran: every entry the stream holds is behind the
        # record (the lag's definition with nothing committed), and says so past its limit
        first: list[Any] = client.xrange(names.history, count=1)  # type: ignore[assignment]
        lag = max(0, now_ms - int(_text(first[0][0]).split("-")[0])) if first else None
    figures: dict[str, str] = client.hgetall(names.history_export)  # type: ignore[assignment]
    return RecordReport(settings.history_dsn_shown, None if lag is None else lag / 1000,
                        _int(figures.get("exported")), _int(figures.get("lost")),
                        str(figures.get("last") or ""), _int(figures.get("at_ms")),
                        _int(figures.get("lost_grew_ms")), ran)


def note_lost(client: redis.Redis, names: Names, report: RecordReport, now_ms: int) -> int:
    """Remember the lost count the self-check saw; return when it last grew (ms, 0:
    never). A count above the one seen before has grown now."""
    seen = _int(client.hget(names.history_export, "lost_seen"))
    if report.lost > seen:
        client.hset(names.history_export, mapping={"lost_seen": report.lost,
                                                    "lost_grew_ms": now_ms})
        return now_ms
    if report.lost < seen:  # the count began again (a new Redis): from there
        client.hset(names.history_export, "lost_seen", report.lost)
    return report.lost_grew_ms


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
