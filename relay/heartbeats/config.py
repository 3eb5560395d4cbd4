"""The routes file's ``heartbeats:`` section (and ``pd-relay heartbeat add``, which checks
its options with the same rules): each entry a check, every problem named by its path.

    heartbeats:
      - name: nightly-backup
        cron: "30 2 * * *"         # or period: 5m (exactly one of the two)
        tz: Europe/Berlin          # the cron schedule's zone (IANA; default UTC)
        grace: 30m                 # how late is still fine (default 5m)
        severity: critical         # the page's (default critical)
        summary: Nightly backup did not run
        keys: [ops]                # where the page goes: keys and/or channels,
        channels: [ops-slack]      #   or route: NAME (that route's keys and channels)
        sources: [backup-host]     # whose API keys may ping it (absent: any source)
      - name: watchdog
        period: 2m
        grace: 5m
        route: ops
        watchdog: ['alertname="Watchdog"', 'prometheus="prod"']

A name is a routes-file name that is not a ping signal (``start``, ``fail``, ``log``) and
not all digits (an exit status): ``/ping/<name>/<signal>`` stays unambiguous. ``watchdog``
matchers are over an alert's labels (Alertmanager's syntax: =, !=, =~, !~); an alert
matching all of them is a success ping of the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.heartbeats.model import Check
from relay.heartbeats.schedule import cron_problem, duration, zone
from relay.routes.channels import Channel, Use, uses
from relay.routes.matchers import _SYNTAX, Matcher
from relay.severity import LEVELS

FIELDS = ("name", "period", "cron", "tz", "grace", "severity", "summary", "keys", "channels",
          "route", "sources", "watchdog")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # as the routes file's names
RESERVED = ("start", "fail", "log")  # ping signals; all-digit names are exit statuses
DEFAULT_GRACE_S = 300.0
SUMMARY_CHARS = 1024  # PagerDuty's cap on a summary
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Problem = Callable[[str, str], None]


@dataclass(frozen=True)
class Known:
    """What a check may name: key names, channels, routes (name -> (keys, channels,
    drop)) and sources (None: not known here, anything goes)."""
    key_names: Collection[str] = ()
    channels: Mapping[str, Channel | None] = field(default_factory=dict)
    routes: Mapping[str, tuple[tuple[str, ...], tuple[Use, ...], bool]] = \
        field(default_factory=dict)
    sources: Collection[str] | None = None


def name_problem(name: Any) -> str:
    """What is wrong with a check's name ('' when nothing)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        return "want a name: up to 40 letters, digits, '.', '_', '-'"
    if name.lower() in RESERVED or name.isdigit():
        return (f"{name!r} is a ping signal (start, fail, log, or an exit status): "
                "pick another name")
    return ""


def label_matcher(text: Any) -> Matcher:
    """A matcher over an alert's labels (``alertname="Watchdog"``); ValueError says what
    is wrong with it."""
    found = _SYNTAX.match(text) if isinstance(text, str) else None
    if found is None or found["op"] == ">=" or not _LABEL.match(found["field"]):
        raise ValueError(f"{str(text)[:80]!r} is not a label matcher (want "
                         'label="value", with =, !=, =~ or !~)')
    raw = found["value"]
    value = re.sub(r'\\(["\\])', r"\1", raw[1:-1]) if raw.startswith('"') else raw
    regex = None
    if found["op"] in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: bad regular expression: {exc}") from None
    return Matcher(found["field"], found["op"], value, regex)


def labels_match(matchers: tuple[Matcher, ...], labels: Mapping[str, Any]) -> bool:
    """Whether an alert's ``labels`` match every one of a watchdog's ``matchers`` (an
    absent label is the empty string, as in Alertmanager); no matchers match nothing."""
    if not matchers:
        return False
    for matcher in matchers:
        seen = labels.get(matcher.field, "")
        seen = seen if isinstance(seen, str) else str(seen)
        if matcher.op in ("=", "!="):
            ok = seen == matcher.value
        else:
            assert matcher.regex is not None
            ok = matcher.regex.fullmatch(seen[:1024]) is not None
        if ok is (matcher.op in ("!=", "!~")):
            return False
    return True


def heartbeats(raw: Any, known: Known, problem: Problem) -> tuple[Check, ...]:
    """The ``heartbeats`` section's checks (problems noted: the file is then refused)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problem("heartbeats", "want a list of checks")
        return ()
    found: list[Check] = []
    for n, entry in enumerate(raw):
        at = f"heartbeats[{n}]"
        if not isinstance(entry, dict):
            problem(at, "want a mapping")
            continue
        check = check_entry(at, entry, known, problem)
        if check is not None:
            found.append(check)
    names = [check.name for check in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problem("heartbeats", f"the name {name!r} is used twice")
    return tuple(found)


def check_entry(at: str, entry: dict[str, Any], known: Known, problem: Problem,
                origin: str = "file") -> Check | None:
    """One check (``at`` its path in the file, or '' for the command line)."""
    def where(name: str) -> str:
        return f"{at}.{name}" if at else name

    before = _Count(problem)
    for extra in sorted(set(entry) - set(FIELDS), key=str):
        before(where(str(extra)), "unknown field (want " + ", ".join(FIELDS) + ")")
    name = entry.get("name")
    if why := name_problem(name):
        before(where("name"), why)
    period_s, grace_s = None, DEFAULT_GRACE_S
    cron, tz = entry.get("cron"), entry.get("tz", "UTC")
    if ("period" in entry) == ("cron" in entry):
        before(at or "check", "give exactly one of period and cron")
    if "period" in entry and (period_s := duration(entry["period"])) is None:
        before(where("period"), "want a duration from 1s to 366d: 90s, 5m, 1h, 1d or seconds")
    if zone(tz) is None:
        before(where("tz"), "want an IANA time zone, such as UTC or Europe/Berlin")
    elif "tz" in entry and "cron" not in entry:
        before(where("tz"), "a time zone is for a cron schedule only")
    if "cron" in entry and (why := cron_problem(cron, tz if zone(tz) else "UTC")):
        before(where("cron"), why)
    if "grace" in entry and (grace_s := duration(entry["grace"])) is None:  # type: ignore[assignment]
        before(where("grace"), "want a duration from 1s to 366d: 90s, 5m, 1h, 1d or seconds")
    severity = entry.get("severity", "critical")
    if severity not in LEVELS:
        before(where("severity"), "want one of " + ", ".join(LEVELS))
    summary = entry.get("summary", "")
    if not isinstance(summary, str) or len(summary) > SUMMARY_CHARS or "\n" in summary:
        before(where("summary"), f"want one line of text, at most {SUMMARY_CHARS} characters")
    keys, heard = _destination(where, entry, known, before)
    sources = _sources(where, entry.get("sources"), known, before)
    watchdog = _watchdog(where, entry.get("watchdog"), before)
    if before.count:
        return None
    return Check(name=str(name), grace_s=float(grace_s), period_s=period_s,
                 cron=cron if "cron" in entry else None, tz=str(tz), severity=str(severity),
                 summary=str(summary), keys=keys, channels=heard, sources=sources,
                 watchdog=watchdog, origin=origin)


class _Count:
    """A problem callback that counts what it passes on."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.count = 0

    def __call__(self, at: str, text: str) -> None:
        self.count += 1
        self.problem(at, text)


def _destination(where: Callable[[str], str], entry: dict[str, Any], known: Known,
                 problem: Problem) -> tuple[tuple[str, ...], tuple[Use, ...]]:
    keys = entry.get("keys") or []
    heard = uses(where("channels"), entry.get("channels"), known.channels, problem)
    if not isinstance(keys, list):
        problem(where("keys"), "want a list of key names")
        keys = []
    for n, key in enumerate(keys):
        if key not in known.key_names:
            problem(where(f"keys[{n}]"), f"no key named {str(key)[:40]!r} in the keys file ("
                    + ", ".join(known.key_names) + ")")
    route = entry.get("route")
    if route is not None:
        if keys or heard:
            problem(where("route"), "give route, or keys and channels, not both")
        elif route not in known.routes:
            problem(where("route"), f"no route named {str(route)[:40]!r} in routes ("
                    + (", ".join(known.routes) or "none defined") + ")")
        elif known.routes[route][2] or not (known.routes[route][0] or known.routes[route][1]):
            problem(where("route"), f"route {route!r} drops its events: a page must go "
                    "somewhere")
        else:
            return known.routes[route][0], known.routes[route][1]
    elif not keys and not (heard or entry.get("channels")):
        problem(where("keys"), "name where its page goes: keys, channels, or route")
    return tuple(str(k) for k in keys), heard


def _sources(where: Callable[[str], str], raw: Any, known: Known,
             problem: Problem) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        problem(where("sources"), "want a list of source names")
        return None
    for n, name in enumerate(raw):
        if known.sources is not None and name not in known.sources:
            problem(where(f"sources[{n}]"), f"no source named {name[:40]!r} in sources ("
                    + (", ".join(known.sources) or "none defined") + ")")
    return tuple(raw)


def _watchdog(where: Callable[[str], str], raw: Any, problem: Problem) -> tuple[Matcher, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        problem(where("watchdog"), "want a list of label matchers, such as "
                "'alertname=\"Watchdog\"'")
        return ()
    found = []
    for n, text in enumerate(raw):
        try:
            found.append(label_matcher(text))
        except ValueError as exc:
            problem(where(f"watchdog[{n}]"), str(exc))
    return tuple(found)
