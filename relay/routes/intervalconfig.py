"""The routes file's ``time_intervals`` section, read as Alertmanager reads its own
(its config/timeinterval): names case-insensitive, ranges ``a:b`` inclusive, times
"HH:MM" with the end excluded and "24:00" allowed, negative days of the month counted
from its end, ``location`` an IANA zone (``zoneinfo``). Stricter than Alertmanager in
three ways, each a problem of the file: "Local" is refused (the relay's machine or
container zone is nobody's office hours: name the zone), an empty list is refused
(leave the field out for any value), and months and years are checked for range.

YAML 1.1 (``yaml.safe_load``) reads an unquoted ``17:00`` as the number 1020 (base 60):
a time given as a whole number of minutes up to 1440 is taken as that reading.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relay.routes.intervals import Range, Spec, TimeInterval

Problem = Callable[[str, str], None]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
TIME_RE = re.compile(r"^(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))$")
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
SPEC_FIELDS = ("times", "weekdays", "days_of_month", "months", "years", "location")
QUOTE = " (quote ranges: YAML reads an unquoted 1:5 as a number)"


def time_intervals(raw: Any, problem: Problem) -> tuple[TimeInterval, ...]:
    """The section, each problem noted by its path (``time_intervals[0].name``)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problem("time_intervals", "want a list of {name, time_intervals}")
        return ()
    found: dict[str, TimeInterval] = {}
    for n, entry in enumerate(raw):
        at = f"time_intervals[{n}]"
        if not isinstance(entry, dict):
            problem(at, "want a mapping with name and time_intervals")
            continue
        for extra in sorted(set(entry) - {"name", "time_intervals"}, key=str):
            problem(f"{at}.{extra}", "unknown field (want name, time_intervals)")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            problem(f"{at}.name", "want a name: up to 40 letters, digits, '.', '_', '-'")
            name = None
        elif name in found:
            problem(f"{at}.name", f"the name {name!r} is used twice")
        specs = entry.get("time_intervals")
        if not isinstance(specs, list):
            problem(f"{at}.time_intervals", "want a list of times, weekdays, days_of_month, "
                    "months, years and location")
            specs = []
        read = [spec(f"{at}.time_intervals[{m}]", s, problem) for m, s in enumerate(specs)]
        if name is not None and name not in found:
            found[name] = TimeInterval(name, tuple(s for s in read if s is not None))
    return tuple(found.values())


def spec(at: str, raw: Any, problem: Problem) -> Spec | None:
    if not isinstance(raw, dict):
        problem(at, "want a mapping of " + ", ".join(SPEC_FIELDS))
        return None
    for extra in sorted(set(raw) - set(SPEC_FIELDS), key=str):
        problem(f"{at}.{extra}", "unknown field (want " + ", ".join(SPEC_FIELDS) + ")")
    fields: dict[str, Any] = {}
    for field, read in (("times", _times), ("weekdays", _weekdays),
                        ("days_of_month", _days), ("months", _months), ("years", _years)):
        if field not in raw:
            continue
        items = raw[field]
        if not isinstance(items, list) or not items:
            problem(f"{at}.{field}", "want a non-empty list (leave the field out for any)")
            continue
        ranges = [read(f"{at}.{field}[{n}]", item, problem) for n, item in enumerate(items)]
        fields[field] = tuple(r for r in ranges if r is not None)
    if "location" in raw:
        zone = location(f"{at}.location", raw["location"], problem)
        if zone is not None:
            fields["zone"] = zone
    return Spec(**fields)


def location(at: str, value: Any, problem: Problem) -> ZoneInfo | None:
    if value == "Local":
        problem(at, "'Local' is the zone of the machine the relay runs on: name the zone "
                "(such as Europe/Berlin, or UTC)")
        return None
    try:
        if isinstance(value, str) and value:
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    problem(at, f"no time zone {str(value)[:60]!r} (want an IANA name such as "
            "Europe/Berlin, America/New_York or UTC)")
    return None


def _minute(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1440:
        return value  # YAML 1.1's reading of an unquoted HH:MM
    match = TIME_RE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    hours, minutes = (match.group(1), match.group(2)) if match.group(1) else ("24", "00")
    return int(hours) * 60 + int(minutes)


def _times(at: str, raw: Any, problem: Problem) -> Range | None:
    if not isinstance(raw, dict) or set(raw) != {"start_time", "end_time"}:
        problem(at, 'want {start_time: "HH:MM", end_time: "HH:MM"}')
        return None
    start, end = _minute(raw["start_time"]), _minute(raw["end_time"])
    for field, value in (("start_time", start), ("end_time", end)):
        if value is None:
            problem(f"{at}.{field}", 'want a time "HH:MM", from "00:00" to "24:00"')
    if start is None or end is None:
        return None
    if start >= end:
        problem(at, "start_time must be before end_time (the end is excluded; for a night "
                'give two ranges, such as 22:00 to 24:00 and 00:00 to 07:00)')
        return None
    return start, end


def _range(at: str, value: Any, member: Callable[[str], int | None], what: str,
           problem: Problem, hint: str = "") -> Range | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        problem(at, f"want {what}, or a range of them such as a:b")
        return None
    parts = value.strip().lower().split(":")
    found = [member(part.strip()) for part in parts]
    if len(parts) > 2 or None in found:
        problem(at, f"{value[:40]!r}: want {what}, or a range of them such as a:b" + hint)
        return None
    begin, end = found[0], found[-1]
    assert begin is not None and end is not None
    return begin, end


def _number(low: int, high: int) -> Callable[[str], int | None]:
    def member(text: str) -> int | None:
        number = int(text) if re.fullmatch(r"-?\d{1,5}", text) else None
        return number if number is not None and low <= number <= high else None
    return member


def _weekdays(at: str, value: Any, problem: Problem) -> Range | None:
    found = _range(at, value, lambda t: WEEKDAYS.index(t) if t in WEEKDAYS else None,
                   "a weekday (sunday to saturday)", problem)
    if found is not None and found[0] > found[1]:
        problem(at, "a range of weekdays runs from sunday to saturday: start day cannot be "
                "after end day (give saturday and sunday apart)")
        return None
    return found


def _days(at: str, value: Any, problem: Problem) -> Range | None:
    found = _range(at, value, lambda t: None if t in ("0", "-0") else _number(-31, 31)(t),
                   "a day of the month (1 to 31, or -1 for the last, to -31)", problem, QUOTE)
    if found is None:
        return None
    begin, end = found
    if begin < 0 < end:
        problem(at, "end day must be negative if start day is negative")
        return None
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        problem(at, f"end day {end} is always before start day {begin}")
        return None
    return found


def _months(at: str, value: Any, problem: Problem) -> Range | None:
    found = _range(at, value, lambda t: MONTHS.index(t) + 1 if t in MONTHS
                   else _number(1, 12)(t), "a month (january to december, or 1 to 12)",
                   problem, QUOTE)
    if found is not None and found[0] > found[1]:
        problem(at, "end month is before start month")
        return None
    return found


def _years(at: str, value: Any, problem: Problem) -> Range | None:
    found = _range(at, value, _number(1, 9999), "a year (such as 2026)", problem)
    if found is not None and found[0] > found[1]:
        problem(at, "end year is before start year")
        return None
    return found
