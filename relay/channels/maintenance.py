"""Maintenance notices: the channels that hear of maintenance windows are told when one
is added, starts, ends or is expired early, each once, with how many triggers it held
back.

Who hears: a channel with ``maintenance: true`` hears of every window; a route with
``maintenance: true`` has its channels hear of the windows that could hold its events:
every window, unless the route and the window pin one field to values that cannot both
hold (one says ``field="value"`` and a matcher of the other on the same field refuses
that value: a route ``source="web"`` hears nothing of a window ``source=~"db.*"``).

When: the dispatcher (one at a time, under its lease) looks about once a second
(``Notices.run``) at the windows of the routes file (read again when the file changes)
and at those added at run time (relay.routes.windows), and compares each with what its
channels were told (``Names.maintenance_told``: per window, the last event told and the
window as it was then). A window is told "added" when first seen before its start,
"started" at its start (one first seen in force is told "started" alone), and "ended"
or "expired early" ``GRACE_S`` after its end, once the ingress nodes have applied the end
and added their counts (relay.tally: ``window|KEY|suppressed``). A window first seen after
its end is told nothing; one of the routes file removed while it was planned or in force
is told "expired early"; one whose times change in the file is another window.

Once: each event's notice is decided for each channel as any notice (relay.channels.decide:
held in the channel's quiet hours for their digest, or gathered), else one RQ job per
channel, its id made of the window, the event and the channel (a dispatcher that crashed
after making them and before noting them makes them again, and RQ refuses the copies),
then it is noted as told.

What a notice says (its line and details) is relay.channels.windownotice's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis

from relay.channels.notice import Notice
from relay.channels.windownotice import SAID, Seen, notice
from relay.channels.windownotice import at as at  # where it was first
from relay.errors import ConfigError
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile, load
from relay.routes.matchers import Matcher
from relay.routes.windows import REFRESH_S, Windows

log = logging.getLogger(__name__)
EVERY_S = 1.0  # how often the dispatcher looks
GRACE_S = REFRESH_S + 2.0  # after a window's end: the nodes applied it and flushed counts
FINAL = ("ended", "expired", "seen")  # "seen": first seen after its end, told nothing


def accepts(matcher: Matcher, value: str) -> bool:
    """Whether ``matcher`` holds for a field whose value is ``value``."""
    return dataclasses.replace(matcher, field="summary").holds(
        {"payload": {"summary": value}}, {})


def compatible(route: tuple[Matcher, ...], window: tuple[Matcher, ...]) -> bool:
    """Whether an event could match both: False only when one side pins a field to a
    value (``=``) that a matcher of the other side on the same field refuses."""
    for ours in route:
        for theirs in window:
            if ours.field != theirs.field:
                continue
            if ours.op == "=" and not accepts(theirs, ours.value):
                return False
            if theirs.op == "=" and not accepts(ours, theirs.value):
                return False
    return True


def hearing(window: Seen, routes: RoutesFile) -> list[str]:
    """The channels told of ``window``: those with ``maintenance: true``, and those of
    each route with ``maintenance: true`` whose events it could hold."""
    found = [c.name for c in routes.channels if c.maintenance]
    for route in routes.routes:
        if route.maintenance and compatible(route.matchers, window.matchers):
            found += [use.name for use in route.channels]
    return list(dict.fromkeys(found))


def due(window: Seen, last: str | None, now: float) -> str | None:
    """The next event to tell of ``window`` (its channels were last told ``last``)."""
    if last in FINAL:
        return None
    if last is None:
        if now >= window.end:
            return "seen"
        return "added" if now < window.start else "started"
    if last == "added" and window.start <= now < window.end:
        return "started"
    if now >= window.end + GRACE_S:
        return "expired" if window.planned_end is not None else "ended"
    return None


class Watched:
    """The routes file, read again when it changes (its windows and who hears of them);
    one that does not check leaves the last one read in force."""

    def __init__(self, routes: RoutesFile, key_names: tuple[str, ...]) -> None:
        self.routes = routes
        self.key_names = key_names
        self.stamp = self._stamp(routes.path)

    @staticmethod
    def _stamp(path: Path | None) -> int | None:
        try:
            return None if path is None else path.stat().st_mtime_ns
        except OSError:
            return None

    def __call__(self) -> RoutesFile:
        path = self.routes.path
        stamp = self._stamp(path)
        if path is not None and stamp is not None and stamp != self.stamp:
            self.stamp = stamp
            try:
                self.routes = load(path, self.key_names)
            except ConfigError as exc:
                log.warning("maintenance notices: routes file %s not read again: %s", path, exc)
        return self.routes


class Notices:
    def __init__(self, client: redis.Redis, names: Names, channels: Mapping[str, Channel],
                 routes: Callable[[], RoutesFile], put: Callable[[Channel, Notice], object],
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.names = names
        self.channels = channels
        self.routes = routes
        self.put = put
        self.clock = clock
        self.windows = Windows(client, names.maintenance, clock)
        self.last = float("-inf")

    def run(self) -> None:
        """``tick`` at most every ``EVERY_S``; a failure other than Redis's is logged."""
        now = self.clock()
        if now - self.last < EVERY_S:
            return
        self.last = now
        try:
            self.tick()
        except redis.RedisError:
            raise
        except Exception:  # noqa: BLE001 - the notices must not stop the dispatcher
            log.exception("maintenance notices: a round failed")

    def current(self, routes: RoutesFile) -> dict[str, Seen]:
        """Every window known now: the routes file's and those added at run time."""
        found = {w.key: Seen(w.key, w.name, w.matchers, w.start, w.end)
                 for w in routes.maintenance}
        for row in self.windows.all():
            try:
                found[row["id"]] = Seen.from_json({**row, "key": row["id"]})
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("maintenance notices: window %s not read: %s", row.get("id"), exc)
        return found

    def tick(self) -> list[tuple[str, str]]:
        """Tell what is due; return (window name, event) of each told."""
        now, routes = self.clock(), self.routes()
        current = self.current(routes)
        told: dict[str, dict[str, Any]] = {
            str(key): json.loads(raw) for key, raw in
            self.client.hgetall(self.names.maintenance_told).items()}
        gone = []
        for key, memo in told.items():
            if key in current:
                continue
            if memo["e"] in FINAL:
                gone.append(key)
                continue
            window = Seen.from_json(memo["w"])  # removed before its notices were done
            if window.end > now:
                window = dataclasses.replace(window, end=now, planned_end=window.end)
                self.note(window, memo["e"], now)
            current[key] = window
        done = []
        for key, window in current.items():
            event = due(window, told.get(key, {}).get("e"), now)
            if event is None:
                continue
            if event != "seen":
                self.tell(window, event, routes, now)
                done.append((window.name, event))
            self.note(window, event, now)
        if gone:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hdel(self.names.maintenance_told, *gone)
                pipe.hdel(self.names.decisions, *(held_field(key) for key in gone))
                pipe.execute()
        return done

    def tell(self, window: Seen, event: str, routes: RoutesFile, now: float) -> None:
        held = int(self.client.hget(self.names.decisions, held_field(window.key)) or 0) \
            if event in ("ended", "expired") else 0
        made = notice(window, event, held, now)
        heard = hearing(window, routes)
        for name in heard:
            channel = self.channels.get(name)
            if channel is None:
                log.warning("maintenance notices: no channel named %s in the routes file this "
                            "worker read: it is not told of window %s", name, window.name)
                continue
            self.put(channel, made)
        log.info("maintenance window %s %s%s; told %s", window.name, SAID[event],
                 f" (held back {held})" if event in ("ended", "expired") else "",
                 ", ".join(heard) or "no channel")

    def note(self, window: Seen, event: str, now: float) -> None:
        self.client.hset(self.names.maintenance_told, window.key, json.dumps(
            {"e": event, "w": window.to_json(), "at": now}))


def held_field(key: str) -> str:
    """The field of ``Names.decisions`` counting the triggers window ``key`` held back."""
    return f"window|{key}|suppressed"
