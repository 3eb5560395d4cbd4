"""The routes file (YAML): who may send (``sources``), where events go (``routes``) and
when triggers are held back (``maintenance``, ``relay.routes.windowconfig``), and the
places besides PagerDuty that hear of events (``channels``, ``relay.routes.channels``).
Read with ``yaml.safe_load`` and checked whole: every problem is named by its path
(``routes[2].keys[0]: ...``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from relay.errors import ConfigError
from relay.heartbeats.config import Known, heartbeats
from relay.heartbeats.model import Check
from relay.keys import exposed
from relay.routes.channels import NO_TIMING, Channel, Timing, Use, channel, uses
from relay.routes.intervalconfig import time_intervals
from relay.routes.intervals import TimeInterval
from relay.routes.matchers import Matcher, parse
from relay.routes.operators import FIELDS as OPERATOR_FIELDS
from relay.routes.operators import Operator, hashes, operator
from relay.routes.selfalert import SelfAlert, self_alert
from relay.routes.sources import FIELDS as SOURCE_FIELDS
from relay.routes.sources import grants
from relay.routes.timing import ROUTE_FIELDS, route_fields
from relay.routes.windowconfig import FIELDS as WINDOW_FIELDS
from relay.routes.windowconfig import Window as Window  # where it was first
from relay.routes.windowconfig import window

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
SECTIONS = ("sources", "routes", "maintenance", "channels", "self_alert", "operators",
            "heartbeats", "time_intervals")


@dataclass(frozen=True)
class Source:
    name: str
    key_hashes: frozenset[str]
    matchers: tuple[Matcher, ...] = ()
    channels: tuple[Use, ...] = ()  # hear of every event this source sends
    follow_up_any: bool = False  # may acknowledge, resolve and re-trigger others' incidents
    routes: tuple[str, ...] | None = None  # the routes its events may take (None: any)


@dataclass(frozen=True)
class Route:
    name: str
    matchers: tuple[Matcher, ...] = ()
    keys: tuple[str, ...] = ()  # key names: incidents spread over them
    drop: bool = False
    channels: tuple[Use, ...] = ()  # hear of its events; with no keys, only they do
    timing: Timing = NO_TIMING  # when its PagerDuty events are muted (its channels: theirs)
    night_keys: tuple[str, ...] = ()  # key names a muted event goes to (none: suppressed)
    maintenance: bool = False  # its channels hear of maintenance windows matching it


@dataclass(frozen=True)
class RoutesFile:
    sources: tuple[Source, ...] = ()
    routes: tuple[Route, ...] = ()
    maintenance: tuple[Window, ...] = ()
    channels: tuple[Channel, ...] = ()
    self_alert: SelfAlert | None = None  # where the relay's own alarms go
    operators: tuple[Operator, ...] = ()  # who may look (viewer) and replay, purge (admin)
    path: Path | None = None
    heartbeats: tuple[Check, ...] = ()  # dead man's switches (relay.heartbeats.config)
    time_intervals: tuple[TimeInterval, ...] = ()  # named, for timings (relay.routes.intervals)


def load_or_none(path: Path | None, key_names: Collection[str]) -> RoutesFile:
    """``load(path)``, or an empty routes file when there is none (``RELAY_ROUTES_FILE``
    unset and no ./pd_routes.yml)."""
    return RoutesFile() if path is None else load(path, key_names)


def load(path: Path, key_names: Collection[str]) -> RoutesFile:
    """Read and check ``path``; raise ConfigError listing every problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"RELAY_ROUTES_FILE: cannot read {path}: {exc}"]) from None
    checker = _Checker(str(path), key_names)
    found = checker.file(data if data is not None else {})
    checker.problems += exposed("RELAY_ROUTES_FILE", path)  # API key hashes: still secrets
    if checker.problems:
        raise ConfigError(checker.problems)
    sources, routes, windows, channels, alarms, operators, checks = found
    return RoutesFile(sources, routes, windows, channels, alarms, operators, path=path,
                      heartbeats=checks, time_intervals=tuple(checker.intervals.values()))


class _Checker:
    def __init__(self, source: str, key_names: Collection[str]) -> None:
        self.source = source
        self.key_names = key_names
        self.problems: list[str] = []
        self.channels: dict[str, Channel | None] = {}  # every name given, found or not
        self.source_at: dict[str, str] = {}  # each source's place in the file
        self.intervals: dict[str, TimeInterval] = {}  # time_intervals by name

    def problem(self, at: str, text: str) -> None:
        self.problems.append(f"{self.source}: {at}: {text}" if at else f"{self.source}: {text}")

    def file(self, data: Any) -> tuple[Any, ...]:
        """(sources, routes, maintenance, channels, self_alert, operators, heartbeats)
        as found; problems noted."""
        if not isinstance(data, dict):
            self.problem("", "want a mapping with " + ", ".join(SECTIONS))
            return (), (), (), (), None, (), ()
        for extra in sorted(set(data) - set(SECTIONS), key=str):
            self.problem(str(extra), "unknown section (want " + ", ".join(SECTIONS) + ")")
        self.intervals = {i.name: i for i in time_intervals(data.get("time_intervals"),
                                                            self.problem)}
        channels = self.items(data, "channels", self.channel_entry)
        sources = self.items(data, "sources", self.source_entry)
        operators = self.items(data, "operators", self.operator_entry)
        hashes: dict[str, str] = {}
        for kind, holder, held in [("sources", s.name, s.key_hashes) for s in sources] + [
                ("operators", o.name, o.token_hashes) for o in operators]:
            for digest in held:
                if digest in hashes:
                    self.problem(f"{kind} {holder}", f"a token also given to {hashes[digest]}")
                hashes[digest] = holder
        routes = self.items(data, "routes", self.route_entry)
        known = {route.name for route in routes}
        for source in sources:
            for n, name in enumerate(source.routes or ()):
                if name not in known:
                    self.problem(f"{self.source_at[source.name]}.routes[{n}]",
                                 f"no route named {name[:40]!r}")
        windows = self.items(data, "maintenance", self.window_entry)
        for kind, entries in (("sources", sources), ("routes", routes), ("maintenance", windows),
                              ("channels", channels), ("operators", operators)):
            self.unique(kind, [entry.name for entry in entries])
        alarms = self_alert(data.get("self_alert"), self.key_names, self.channels, self.problem)
        checks = heartbeats(data.get("heartbeats"), Known(
            self.key_names, self.channels, {r.name: (r.keys, r.channels, r.drop) for r in routes},
            [source.name for source in sources]), self.problem)
        return (tuple(sources), tuple(routes), tuple(windows), tuple(channels), alarms,
                tuple(operators), checks)

    def items(self, data: dict[str, Any], section: str,
              read: Callable[[str, dict[str, Any]], Any]) -> list[Any]:
        entries = data.get(section) or []
        if not isinstance(entries, list):
            self.problem(section, "want a list")
            return []
        found = []
        for n, entry in enumerate(entries):
            at = f"{section}[{n}]"
            if not isinstance(entry, dict):
                self.problem(at, "want a mapping")
                continue
            value = read(at, entry)
            if value is not None:
                found.append(value)
        return found

    def unique(self, section: str, names: list[str]) -> None:
        for name in {n for n in names if names.count(n) > 1}:
            self.problem(section, f"the name {name!r} is used twice")

    def fields(self, at: str, entry: dict[str, Any], allowed: set[str]) -> str | None:
        for extra in sorted(set(entry) - allowed, key=str):
            self.problem(f"{at}.{extra}", "unknown field (want " + ", ".join(sorted(allowed)) + ")")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.problem(f"{at}.name", "want a name: up to 40 letters, digits, '.', '_', '-'")
            return None
        return name

    def matchers(self, at: str, entry: dict[str, Any]) -> tuple[Matcher, ...]:
        raw = entry.get("match", [])
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.problem(f"{at}.match", "want a list of matchers")
            return ()
        found = []
        for n, text in enumerate(raw):
            try:
                found.append(parse(text))
            except ValueError as exc:
                self.problem(f"{at}.match[{n}]", str(exc))
        return tuple(found)

    def source_entry(self, at: str, entry: dict[str, Any]) -> Source | None:
        name = self.fields(at, entry, SOURCE_FIELDS)
        matchers = self.matchers(at, entry)
        key_hashes = hashes(f"{at}.api_keys", entry.get("api_keys"), self.problem)
        heard = uses(f"{at}.channels", entry.get("channels"), self.channels, self.problem,
                     self.intervals)
        any_follow_up, routes = grants(at, entry, name, self.problem)
        if name is None:
            return None
        self.source_at[name] = at
        return Source(name, key_hashes, matchers, heard, any_follow_up, routes)

    def operator_entry(self, at: str, entry: dict[str, Any]) -> Operator | None:
        return operator(at, entry, self.fields(at, entry, OPERATOR_FIELDS), self.problem)

    def channel_entry(self, at: str, entry: dict[str, Any]) -> Channel | None:
        name = self.fields(at, entry, set(entry))
        found = channel(at, entry, name, self.problem, intervals=self.intervals)
        if name is not None:
            self.channels[name] = found
        return found

    def route_entry(self, at: str, entry: dict[str, Any]) -> Route | None:
        name = self.fields(at, entry, {"name", "match", "keys", "drop", "channels",
                                       *ROUTE_FIELDS})
        matchers = self.matchers(at, entry)
        keys, drop = entry.get("keys"), entry.get("drop", False)
        heard = uses(f"{at}.channels", entry.get("channels"), self.channels, self.problem,
                     self.intervals)
        if drop is not False and drop is not True:
            self.problem(f"{at}.drop", "want true or false")
        if drop and (keys or heard):
            self.problem(at, "a route either drops events or sends them on, not both")
        if not drop and not (keys is None and heard):  # channels alone: no PagerDuty
            if not isinstance(keys, list) or not keys:
                self.problem(f"{at}.keys", "want a list of key names from the keys file "
                             "(or channels, or drop: true)")
                keys = []
            for n, key in enumerate(keys):
                if key not in self.key_names:
                    self.problem(f"{at}.keys[{n}]", f"no key named {str(key)[:40]!r} in the "
                                 "keys file (" + ", ".join(self.key_names) + ")")
        timed = route_fields(at, entry, self.intervals, self.key_names,
                             bool(keys) and not drop, self.problem)
        if name is None:
            return None
        return Route(name, matchers, tuple(keys or ()), drop is True, heard, **timed)

    def window_entry(self, at: str, entry: dict[str, Any]) -> Window | None:
        name = self.fields(at, entry, WINDOW_FIELDS)
        return window(at, entry, name, self.matchers(at, entry), self.problem)
