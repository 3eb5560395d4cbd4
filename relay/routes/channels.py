"""The ``channels`` section of the routes file: places besides PagerDuty that hear of
events (a chat room, a webhook, a mailbox), each defined once by name, and how routes
and sources name them (``channels: [NAME, {name: NAME, min_severity: LEVEL}]``).

Strings may take secrets from the environment (``${NAME}``), from variables named
``PD_RELAY_SECRET_*`` only: any other name (``${RELAY_REDIS_URL}``, ``${HOME}``) is a
problem of the file, so a routes file cannot send the relay's own settings or anything
else of its environment to a channel. A channel's secrets (webhook URLs, tokens,
passwords) never appear in logs, status or replies: ``shown`` is what may be printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from relay.routes import channel_types as types
from relay.routes import fields as check
from relay.routes import jsonbody
from relay.routes.channel_types import FIELDS, PER_MINUTE, REQUIRED, TYPES  # per type
from relay.routes.timing import CHANNEL_FIELDS, USE_FIELDS, channel_fields, use_fields
from relay.routes.timing import NO_TIMING as NO_TIMING  # (re-exported: the contract's place)
from relay.routes.timing import Breaker as Breaker
from relay.routes.timing import Timing as Timing
from relay.severity import LEVELS

ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_PREFIX = "PD_RELAY_SECRET_"  # the only variables ${NAME} reads
COMMON = {"name", "type", "min_severity", "per_minute", "retries", "template", "timeout_s",
          *CHANNEL_FIELDS}  # relay.routes.timing: quiet hours, digest, breaker


# How each field's value is checked (relay.routes.fields).
CHECKS = {
    "min_severity": check.level, "per_minute": check.count, "retries": check.count,
    "timeout_s": check.seconds, "template": check.template, "url": check.url,
    "method": check.method, "headers": check.headers, "body": jsonbody.check,
    "token": check.text, "room": check.text, "host": check.text, "port": check.count,
    "security": check.security, "username": check.text, "password": check.text,
    "sender": check.address, "to": check.addresses, "subject": check.template,
    **types.CHECKS,
}


@dataclass(frozen=True)
class Channel:
    name: str
    type: str
    min_severity: str = "info"  # the least severe event it hears of, unless a route says
    per_minute: int = 60
    retries: int = 12  # sends after the first, at growing intervals, before it fails
    template: str | None = None  # Jinja2 text of the message (sandboxed)
    timeout_s: float = 10.0
    timing: Timing = NO_TIMING  # quiet hours (mute_time_intervals, active_time_intervals)
    muted: str = "hold"  # what a muted message becomes: held for a digest, or "drop"ped
    digest_s: float = 0.0  # YAML ``digest: 2m``: gather messages that long, send one (0: off)
    digest_first: str = "gather"  # or "immediate": a quiet period's first message at once
    breaker: Breaker = Breaker()
    failed_max: int = 100  # failed messages kept in its RQ failed registry, oldest dropped
    maintenance: bool = False  # hears maintenance notices (window added, started, ended)
    url: str = field(default="", repr=False)  # webhooks: the URL is the secret
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    body: str | None = None  # webhook: Jinja2 template of a JSON body (relay.routes.jsonbody)
    token: str = field(default="", repr=False)  # webex bot token
    room: str = ""
    host: str = ""
    port: int = 0
    security: str = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = ""
    to: tuple[str, ...] = ()
    subject: str | None = None  # email: Jinja2 template of the subject
    user: str = field(default="", repr=False)  # pushover: the user or group key
    sound: str = ""  # pushover: a sound's name (default: the user's own)
    device: str = ""  # pushover: only these devices (default: all the user's)
    emergency_retry_s: int = 60  # pushover, critical: Pushover repeats it this often...
    emergency_expire_s: int = 3600  # ...until acknowledged or this long has passed
    account: str = field(default="", repr=False)  # signal: the sending number; sms: SID
    command: str = "signal-cli"  # signal: the program (a name on PATH, or a path)
    chat: str = ""  # telegram: the chat's id or @channelname
    service: str = ""  # sms: a Twilio Messaging Service SID (instead of ``sender``)

    @property
    def shown(self) -> str:
        """What may be printed of where it sends: type and host, never a path or token."""
        if self.type == "email":
            return f"email via {self.host}:{self.port} to {len(self.to)} recipient(s)"
        if self.type == "signal":
            return f"signal via {Path(self.command).name} to {len(self.to)} recipient(s)"
        if self.type == "sms":
            return (f"sms via {urlparse(self.url).hostname or '?'} to {len(self.to)} "
                    "recipient(s)")
        return f"{self.type} {urlparse(self.url).hostname or '?'}"


@dataclass(frozen=True)
class Use:
    """A route's or source's use of a channel: which, and its least severity there
    (None: the channel's own)."""

    name: str
    min_severity: str | None = None
    template: str | None = None  # this route's own message text (Jinja2)
    timing: Timing = NO_TIMING  # this use's own quiet hours, besides the channel's
    muted: str | None = None  # "hold" or "drop" while muted (None: the channel's)
    digest_s: float | None = None  # this use's digest period (None: the channel's)


def hearing(uses: Sequence[Use], severity: object, least: Mapping[str, str]) -> tuple[str, ...]:
    """The channels of ``uses`` that hear of an event of ``severity``: those whose least
    severity (the use's, else the channel's in ``least``) it reaches; a severity that is
    none of the four (a change event, a follow-up) counts as info."""
    rank = LEVELS.index(severity) if severity in LEVELS else len(LEVELS) - 1
    return tuple(use.name for use in uses
                 if rank <= LEVELS.index(use.min_severity or least[use.name]))


Problem = Callable[[str, str], None]


def referenced(path: Path) -> set[str]:
    """The environment variables a routes file takes secrets from (``${NAME}``): those
    it may read, ``PD_RELAY_SECRET_*``."""
    try:
        return {name for name in ENV_RE.findall(path.read_text(encoding="utf-8"))
                if name.startswith(SECRET_PREFIX)}
    except (OSError, UnicodeDecodeError):
        return set()


def expand(value: Any, at: str, problem: Problem, env: Mapping[str, str]) -> Any:
    """``value`` with each ``${NAME}`` in its strings taken from the environment."""
    if isinstance(value, str):
        def swap(match: re.Match[str]) -> str:
            name = match.group(1)
            if not name.startswith(SECRET_PREFIX):
                bare = name.removeprefix("PD_RELAY_")
                problem(at, f"${{{name}}}: a routes file reads only variables named "
                        f"{SECRET_PREFIX}* (so that it cannot send the relay's own settings "
                        f"or anything else of its environment to a channel): rename it "
                        f"{SECRET_PREFIX}{bare} in the environment and here")
                return ""
            if name not in env:
                problem(at, f"the environment variable {name} is not set")
                return ""
            return env[name]
        return ENV_RE.sub(swap, value)
    if isinstance(value, list):
        return [expand(v, f"{at}[{n}]", problem, env) for n, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand(v, f"{at}.{k}", problem, env) for k, v in value.items()}
    return value


def channel(at: str, entry: dict[str, Any], name: str | None, problem: Problem,
            env: Mapping[str, str] | None = None,
            intervals: Collection[str] = ()) -> Channel | None:
    """Check one entry of the ``channels`` section (its name already checked);
    ``intervals``: the names of the file's time_intervals."""
    kind = entry.get("type")
    if kind not in TYPES:
        problem(f"{at}.type", "want one of " + ", ".join(TYPES))
        return None
    for extra in sorted(set(entry) - COMMON - FIELDS[kind], key=str):
        problem(f"{at}.{extra}", f"unknown field for a {kind} channel (want "
                + ", ".join(sorted(COMMON | FIELDS[kind])) + ")")
    entry = expand(entry, at, problem, os.environ if env is None else env)
    found: dict[str, Any] = {"per_minute": PER_MINUTE[kind],
                             **channel_fields(at, entry, intervals, problem)}
    for key, test in {**CHECKS, **types.TYPE_CHECKS.get(kind, {})}.items():
        if key in entry:
            value, why = test(entry[key])
            if why:
                problem(f"{at}.{key}", why)
            else:
                found[key] = value
    required = REQUIRED[kind]
    for key in required:
        if key not in entry:
            problem(f"{at}.{key}", f"a {kind} channel needs it")
    complete = types.finish(kind, at, entry, found, problem)
    if name is None or any(key not in entry for key in required) or not complete:
        return None
    return Channel(name=name, type=str(kind), **found)


def uses(at: str, raw: Any, known: Mapping[str, Channel | None], problem: Problem,
         intervals: Collection[str] | None = None) -> tuple[Use, ...]:
    """A route's or source's ``channels``: names, or {name, min_severity, template} and,
    given ``intervals`` (the names of the file's time_intervals), the use's quiet hours
    and digest (relay.routes.timing.USE_FIELDS)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problem(at, "want a list of channel names")
        return ()
    found = []
    for n, item in enumerate(raw):
        name, level, template = (item.get("name"), item.get("min_severity"),
                                 item.get("template")) if isinstance(item, dict) \
            else (item, None, None)
        allowed = {"name", "min_severity", "template", *(USE_FIELDS if intervals is not None
                                                         else ())}
        if isinstance(item, dict) and set(item) - allowed:
            problem(f"{at}[{n}]", "want " + ", ".join(sorted(allowed)) + " only")
        timed = use_fields(f"{at}[{n}]", item, intervals or (), problem) \
            if isinstance(item, dict) and intervals is not None else {}
        if template is not None and (why := check.template(template)[1]):
            problem(f"{at}[{n}].template", why)
        if not isinstance(name, str) or name not in known:  # (a list: unhashable)
            problem(f"{at}[{n}]", f"no channel named {str(name)[:40]!r} in channels ("
                    + (", ".join(known) or "none defined") + ")")
            continue
        if level is not None and level not in LEVELS:
            problem(f"{at}[{n}].min_severity", "want one of " + ", ".join(LEVELS))
            continue
        found.append(Use(str(name), level, template, **timed))
    return tuple(found)
