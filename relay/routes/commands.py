"""``pd-relay token new NAME`` and ``pd-relay routes check|test``: making API keys, and
asking the routes file what it would do with an event, as ``amtool config routes test``
does for Alertmanager."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from relay.auth import new_token
from relay.keys import mask
from relay.router import Route, Router
from relay.routes.channels import Channel, Use
from relay.routes.config import Route as Rule
from relay.routes.config import RoutesFile, load
from relay.routes.intervals import HORIZON_S, TimeInterval, muted_until, muted_until_all
from relay.routes.matchers import all_hold
from relay.routes.sources import ANONYMOUS, ROUTING_KEY_SENDER
from relay.settings import Settings
from relay.severity import LEVELS


def add_routes_parsers(sub: Any) -> None:
    token = sub.add_parser("token", help="make an API key for a source of the routes file")
    token.add_argument("action", choices=["new"])
    token.add_argument("name", metavar="NAME", help="the source it is for")
    routes = sub.add_parser("routes", help="check the routes file, or test an event against it")
    actions = routes.add_subparsers(dest="action", required=True)
    actions.add_parser("check", help="check the routes file and say what it holds")
    test = actions.add_parser("test", help="which route an event takes, and where it goes")
    test.add_argument("event", metavar="EVENT_JSON", help="the event, as JSON ('-': stdin)")
    test.add_argument("--source", metavar="NAME", help="as sent with this source's API key")
    test.add_argument("--adapter", default="events-v2", help="as received by this adapter")
    test.add_argument("--at", metavar="TIME", type=moment,
                      help="as accepted at this time (ISO 8601, such as "
                      "2026-12-24T23:00:00+01:00; no zone: UTC), for quiet hours; default now")


def moment(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time (UTC when it names no zone)."""
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want a time such as 2026-12-24T23:00:00+01:00") from None
    return (found if found.tzinfo else found.replace(tzinfo=UTC)).timestamp()


def token_new(args: argparse.Namespace) -> int:
    token, digest = new_token()
    print(f"API key for {args.name} (shown once: give it to the sender, keep no copy):\n"
          f"  {token}\n"
          f"In the routes file (RELAY_ROUTES_FILE), under the source:\n"
          f"  - name: {args.name}\n"
          f"    api_keys: [\"{digest}\"]")
    return 0


def routes_command(settings: Settings, args: argparse.Namespace) -> int:
    routes = load(settings.routes_file, settings.key_names) if settings.routes_file else None
    if args.action == "check":
        return _check(settings, routes)
    return _test(settings, routes or RoutesFile(), args)


def _check(settings: Settings, routes: RoutesFile | None) -> int:
    if routes is None:
        print("no routes file (RELAY_ROUTES_FILE, or ./pd_routes.yml): every event goes "
              "over every key")
    else:
        print(f"routes file ok: {routes.path}: {len(routes.sources)} source(s), "
              f"{len(routes.routes)} route(s), {len(routes.maintenance)} maintenance window(s), "
              f"{len(routes.channels)} channel(s), {len(routes.heartbeats)} heartbeat check(s), "
              f"{len(routes.time_intervals)} time interval(s)"
              + (", self-alerts" if routes.self_alert else ""))
    if settings.allow_anonymous:
        print("WARNING: open relay: anyone who can reach it may send (RELAY_ALLOW_ANONYMOUS)")
    return 0


def _test(settings: Settings, routes: RoutesFile, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.event == "-" else args.event
    event = json.loads(text)
    if not isinstance(event, dict):
        print("pd-relay: give one event, a JSON object", file=sys.stderr)
        return 2
    sources = {source.name: source for source in routes.sources}
    if args.source and args.source not in sources:
        print(f"pd-relay: no source {args.source!r} in the routes file", file=sys.stderr)
        return 2
    named = event.get("routing_key") in settings.routing_keys
    sender = args.source or (ROUTING_KEY_SENDER if named else ANONYMOUS)
    context = {"sender": sender, "adapter": args.adapter}
    if args.source:
        failed = all_hold(sources[args.source].matchers, event, context)
        if failed is not None:
            print(f"refused (403): source {args.source} may not send it: {failed} does not hold")
            return 1
    elif not named and not settings.allow_anonymous:
        print("refused (401): no API key and no routing_key of this relay")
        return 1
    router = Router(settings.routing_keys, settings.draining_keys, settings.key_names,
                    routes.routes, routes.maintenance, routes.channels, routes.time_intervals)
    kind = "change" if "event_action" not in event else "alert"
    at = time.time() if args.at is None else args.at
    route = router.route(kind, dict(event), "", context, at)
    if isinstance(route, str):
        print(f"invalid: {route}")
        return 1
    intervals = {interval.name: interval for interval in routes.time_intervals}
    rules = {rule.name: rule for rule in routes.routes}
    rule = rules.get(route.rule.removeprefix("muted:"))
    print(_verdict(settings, route) + (_quiet(rule, route, intervals, at) if rule else ""))
    uses = list(rule.channels) if rule and route.rule != "routing-key" else []
    if route.rule == "routing-key" and (found := router.first(event, context)):
        uses = list(found[0].channels)
    heard = list(route.channels)
    if args.source:
        uses += sources[args.source].channels
        heard += [c for c in router.hearing(sources[args.source].channels, event)
                  if c not in heard]
    if heard:
        print("channels: " + ", ".join(heard))
    channels = {channel.name: channel for channel in routes.channels}
    for name in heard:
        said = _channel(channels[name], [u for u in uses if u.name == name], intervals, at)
        if said:
            print(f"  {name}: {said}")
    return 0


def _when(seconds: float, at: float) -> str:
    if seconds >= at + HORIZON_S:
        return f"beyond {HORIZON_S / 86400:.0f} days"
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _quiet(rule: Rule, route: Route, intervals: Mapping[str, TimeInterval],
           at: float) -> str:
    """What the route's quiet hours do to the event at ``at``."""
    until = muted_until(rule.timing, intervals, at)
    if until is None:
        return ""
    least = rule.timing.min_severity
    passing = f"; {least} and above go as usual" if least else ""
    if route.rule.startswith("muted:"):
        return f" (muted until {_when(until, at)}{passing})"
    if route.night:
        return f" (night key: the route is muted until {_when(until, at)}{passing})"
    return f" (the route is muted until {_when(until, at)}, but {least} and above go as usual)"


def _channel(channel: Channel, uses: Sequence[Use], intervals: Mapping[str, TimeInterval],
             at: float) -> str:
    """A channel's quiet hours and digest for an event heard at ``at``: muted by its own
    timing or its use's (each letting its muted_min_severity through), held or dropped
    as the use (else the channel) says."""
    said = []
    timings = [channel.timing, *(use.timing for use in uses)]
    muting = [timing for timing in timings if muted_until(timing, intervals, at) is not None]
    if muting:
        mode = next((use.muted for use in uses if use.muted), channel.muted)
        until = muted_until_all(timings, intervals, at) or at
        said.append(f"muted until {_when(until, at)}: "
                    + ("held, then sent as one digest" if mode == "hold" else "dropped"))
        if all(timing.min_severity for timing in muting):  # the strictest lets it through
            said.append(min((str(t.min_severity) for t in muting), key=LEVELS.index)
                        + " and above pass")
    elif any(timing.timed for timing in timings):
        said.append("not muted then")
    digest = next((use.digest_s for use in uses if use.digest_s is not None), channel.digest_s)
    if digest:
        said.append(f"digest every {digest:g}s")
    return "; ".join(said)


def _verdict(settings: Settings, route: Route) -> str:
    if route.slot == 0 and route.rule.startswith("muted:"):
        return (f"route {route.rule.removeprefix('muted:')}: suppressed (not sent), its "
                "acknowledge and resolve too")
    if route.slot == 0 and route.channels:
        return f"route {route.rule}: to its channels only (not to PagerDuty)"
    if route.slot == 0:
        return f"route {route.rule}: held back (not sent), its acknowledge and resolve too"
    key = settings.routing_keys[abs(route.slot) - 1]
    where = f"key {settings.name_of(key)} ({mask(key)})"
    if route.action in ("acknowledge", "resolve"):
        return (f"{route.action}: follows its trigger's key if the relay saw it (held if "
                f"the trigger was); else {where}")
    return f"route {route.rule}: {where}, unless its incident is already open on another key"
