"""Settings: read from the environment in one place, shared by ingress and worker.

Every bad value is collected and reported at once (``ConfigError``), so start-up
fails fast with the whole list.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from relay.errors import ConfigError
from relay.http import Networks, networks
from relay.keys import mask, read_keys
from relay.sentinel import is_sentinel
from relay.sentinel import parse as parse_sentinel
from relay.severity import SeverityMap, parse_map

LOG_FORMATS = ("text", "json")
STORM_MODES = ("off", "backlog", "always")
LEASE_MARGIN_S = 1.0  # a lease must outlast the longest send by this much
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
RECORD_STREAM_MB = 128.0  # RELAY_HISTORY_MAX_MB's default with RELAY_HISTORY_DSN: a burst of
# 100,000 events took ~40 MB of stream, and 24 MB lost 16-29% of it (docs/BENCHMARKS.md)
DEFAULT_ROUTES_FILE = Path("pd_routes.yml")


@dataclass(frozen=True)
class Settings:
    routing_keys: tuple[str, ...] = ()
    draining_keys: frozenset[str] = frozenset()  # keys marked ``drain`` in the keys file
    key_names: tuple[str, ...] = ()  # each key's name in the keys file, in the same order
    redis_url: str = "redis://127.0.0.1:6379/0"
    sentinel_password: str = field(default="", repr=False)  # the Sentinels' own
    min_replicas: int = 0  # replicas a write must reach (from_env: 1 with Sentinel)
    replica_timeout_ms: int = 500  # how long WAIT waits for them
    pd_url: str = "https://events.pagerduty.com"
    keys_file: Path = Path("pd_routing_keys.txt")
    routes_file: Path | None = None  # RELAY_ROUTES_FILE, else ./pd_routes.yml when present
    allow_anonymous: bool = False  # accept events with neither API key nor routing key
    severities: SeverityMap = field(default_factory=SeverityMap, hash=False)  # adapters'
    rate_per_min: int = 120
    rate_window_s: float = 60.0
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    retry_after_max_s: float = 300.0
    lease_ttl_s: float = 15.0
    incident_ttl_s: float = 7 * 86_400  # how long an incident's key is remembered
    incidents_max: int = 50_000  # incidents remembered per key, and held back, at most
    storm_mode: str = "backlog"  # off: arrival order; else severity order, repeats merged
    storm_after_s: float = 10.0  # backlog mode merges once the oldest waits this long
    storm_age_s: float = 300.0  # a lesser lane's event waiting this long gets a share of sends
    redis_timeout_s: float = 2.0
    max_body_bytes: int = 512_000
    queue_max_events: int = 100_000  # per key: about 14 hours at 120 a minute
    queue_max_mb: float = 64.0  # per key, queued and in flight
    queues_max_mb: float = 256.0  # every key's queues together (below Redis's maxmemory)
    outbox_max_mb: float = 32.0  # notices waiting to become channel jobs
    channel_retry_base_s: float = 10.0  # a channel's first retry, doubling from there
    channel_retry_max_s: float = 900.0
    dead_letter_days: float = 30.0  # dead letters older than this are swept
    self_check_s: float = 30.0  # how often the relay's own alarms are checked
    retention_s: float = 3600.0  # how often old dead letters and memories are swept
    history_days: float = 7.0  # how long each event's story is kept (90 in PostgreSQL)
    history_dsn: str = ""  # PostgreSQL keeps the record (relay.history.pg); "": the stream only
    history_max_entries: int = 200_000  # steps kept at most (0: no history)
    history_max_mb: float = 24.0  # the stories' bytes kept at most
    ui_open_view: bool = False  # anyone may look at the pages and history without a token
    ui_session_hours: float = 12.0  # a dashboard session ends this long after sign-in
    ui_idle_minutes: float = 60.0  # or once unused this long
    ui_sessions_max: int = 20  # live sessions per operator (the oldest goes first)
    trusted_proxies: Networks = ()  # peers whose X-Forwarded-For/-Proto are believed
    admin_allow: Networks = ()  # clients that may read /metrics and /readyz without a token
    prefix: str = "pdr"
    threads: int = 8
    log_level: str = "INFO"
    log_format: str = "text"

    @property
    def rate_window_ms(self) -> int:
        """The limiter's window: PagerDuty's plus a guard of 1%, at least 100 ms (see
        relay/limiter.py)."""
        return int(self.rate_window_s * 1000) + max(100, int(self.rate_window_s * 10))

    @property
    def history_max_bytes(self) -> int:
        return int(self.history_max_mb * 2**20)

    @property
    def history_dsn_shown(self) -> str:
        """The PostgreSQL DSN as it may be printed: its password masked."""
        return masked_url(self.history_dsn)

    @property
    def redis_shown(self) -> str:
        """The Redis URL as it may be printed: its password masked."""
        return masked_url(self.redis_url)

    def name_of(self, key: str) -> str:
        """The key's name: what status, metrics, logs and routes call it."""
        names = dict(zip(self.routing_keys, self.key_names, strict=False))
        if key in names:
            return names[key]
        return f"key-{self.routing_keys.index(key) + 1}" if key in self.routing_keys else mask(key)

    @staticmethod
    def env_names() -> tuple[str, ...]:
        """Every environment variable the relay reads (``pd-relay stack`` passes each one
        on to every process it starts)."""
        return tuple(name for name, _, _ in _FROM_ENV)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        problems: list[str] = []
        values: dict[str, Any] = {}

        for name, attr, parse in _FROM_ENV:
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[attr] = parse(raw)
            except ValueError as exc:
                problems.append(f"{name}={masked_url(raw)!r}: {exc}")

        if values.get("history_dsn"):  # the record in PostgreSQL: its own defaults
            values.setdefault("history_days", 90.0)  # RELAY_HISTORY_DAYS
            # the stream is then the record's buffer, each accepted step with its event
            values.setdefault("history_max_mb", RECORD_STREAM_MB)
        if "min_replicas" not in values and is_sentinel(values.get("redis_url", "")):
            values["min_replicas"] = 1
        found = read_keys(values.get("keys_file", cls.keys_file))
        problems.extend(found.problems)
        routes = values.get("routes_file")
        if routes is None and DEFAULT_ROUTES_FILE.exists():
            values["routes_file"] = routes = DEFAULT_ROUTES_FILE
        if routes is not None and not found.problems:
            problems.extend(_routes_problems(routes, found.names))
        if not problems:
            settings = cls(routing_keys=found.keys, draining_keys=found.draining,
                           key_names=found.names, **values)
            problems += settings._conflicts()
        if problems:
            raise ConfigError(problems)
        return settings

    def _conflicts(self) -> list[str]:
        """Problems no single value shows: a queue must hold one request; a worker may
        only start a send that ends before its lease could lapse (docs/DESIGN.md, fenced
        sends)."""
        problems = []
        smallest = min(self.queue_max_mb, self.queues_max_mb) * 2**20
        if smallest < self.max_body_bytes:
            problems.append(
                f"RELAY_QUEUE_MAX_MB={self.queue_max_mb:g} and RELAY_QUEUES_MAX_MB="
                f"{self.queues_max_mb:g} must each hold one request of RELAY_MAX_BODY_BYTES="
                f"{self.max_body_bytes}: raise them or lower the body limit")
        send_s = self.connect_timeout_s + self.read_timeout_s
        wait_s = self.replica_timeout_ms / 1000 if self.min_replicas else 0.0
        if self.lease_ttl_s >= send_s + LEASE_MARGIN_S and \
                self.lease_ttl_s < send_s + LEASE_MARGIN_S + wait_s:
            problems.append(
                f"RELAY_LEASE_TTL_S={self.lease_ttl_s:g} is too short for "
                f"RELAY_REPLICA_TIMEOUT_MS={self.replica_timeout_ms} with RELAY_MIN_REPLICAS="
                f"{self.min_replicas}: a send starts after its WAIT for replicas, and the "
                f"lease must outlast both by {LEASE_MARGIN_S:g}s: raise the lease to at least "
                f"{send_s + LEASE_MARGIN_S + wait_s:g} or shorten the timeouts")
        if self.lease_ttl_s < send_s + LEASE_MARGIN_S:
            problems.append(
                f"RELAY_LEASE_TTL_S={self.lease_ttl_s:g} is too short: a send may take "
                f"RELAY_CONNECT_TIMEOUT_S={self.connect_timeout_s:g} + "
                f"RELAY_READ_TIMEOUT_S={self.read_timeout_s:g} = {send_s:g}s, and the lease "
                f"must outlast it by {LEASE_MARGIN_S:g}s: raise the lease to at least "
                f"{send_s + LEASE_MARGIN_S:g} or shorten the timeouts")
        return problems


def masked_url(url: str) -> str:
    """``url`` with any password in it replaced by ``***``: the userinfo's, and a
    ``password=`` in the query (redis-py reads both). The userinfo is all before the
    last ``@``, so a password holding ``/``, ``?`` or ``#`` (not percent-encoded) is
    masked whole too; a Sentinel URL's userinfo without ``:`` is the password alone."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if sep and at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            url = f"{scheme}://{user}:***@{tail}"
        elif not colon and user and is_sentinel(url):
            url = f"{scheme}://***@{tail}"
    head, mark, query = url.partition("?")
    if not mark:
        return url
    return head + mark + re.sub(r"(^|&)(password=)[^&#]*", r"\1\2***", query, flags=re.I)


def _routes_problems(path: Path, key_names: tuple[str, ...]) -> list[str]:
    from relay.routes.config import load

    try:
        load(path, key_names)
    except ConfigError as exc:
        return exc.problems
    return []


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return value in ("true", "1", "yes")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"not a number ({kind.__name__})") from None
        if not value > 0:
            raise ValueError("must be greater than 0")
        return value

    return parse


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _choice(options: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return value

    return parse


def _redis_url(raw: str) -> str:
    if is_sentinel(raw):
        parse_sentinel(raw)  # ValueError naming every bad part
        return raw
    parts = urlparse(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
    try:
        parts.port  # noqa: B018 (urllib checks the port when it is read)
    except ValueError:
        raise ValueError("its port must be a number, 1 to 65535") from None
    return raw


def _http_url(raw: str) -> str:
    parts = urlparse(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.params:
        raise ValueError(
            f"give PagerDuty's base URL without a path, such as {parts.scheme}://"
            f"{parts.netloc}: the relay adds /v2/enqueue and /v2/change/enqueue itself")
    return raw.rstrip("/")


def _pg_dsn(raw: str) -> str:
    """A libpq URI (postgresql://user:password@host:port/database?options)."""
    parts = urlparse(raw)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL, such as "
                         "postgresql://relay:PASSWORD@db.example:5432/relay")
    try:
        parts.port  # noqa: B018 (urllib checks the port when it is read)
    except ValueError:
        raise ValueError("its port must be a number, 1 to 65535") from None
    return raw


def _word(raw: str) -> str:
    if not raw.replace("-", "").replace("_", "").isalnum():
        raise ValueError("use letters, digits, - and _ only")
    return raw


# The environment variables the relay reads: (name, Settings attribute, parser).
_FROM_ENV: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("RELAY_REDIS_URL", "redis_url", _redis_url),
    ("RELAY_SENTINEL_PASSWORD", "sentinel_password", str),
    ("RELAY_MIN_REPLICAS", "min_replicas", _count),
    ("RELAY_REPLICA_TIMEOUT_MS", "replica_timeout_ms", _positive(int)),
    ("RELAY_PD_URL", "pd_url", _http_url),
    ("RELAY_KEYS_FILE", "keys_file", Path),
    ("RELAY_ROUTES_FILE", "routes_file", Path),
    ("RELAY_ALLOW_ANONYMOUS", "allow_anonymous", _flag),
    ("RELAY_SEVERITY_MAP", "severities", parse_map),
    ("RELAY_RATE_PER_MIN", "rate_per_min", _positive(int)),
    ("RELAY_RATE_WINDOW_S", "rate_window_s", _positive(float)),
    ("RELAY_CONNECT_TIMEOUT_S", "connect_timeout_s", _positive(float)),
    ("RELAY_READ_TIMEOUT_S", "read_timeout_s", _positive(float)),
    ("RELAY_RETRY_BASE_S", "retry_base_s", _positive(float)),
    ("RELAY_RETRY_MAX_S", "retry_max_s", _positive(float)),
    ("RELAY_RETRY_AFTER_MAX_S", "retry_after_max_s", _positive(float)),
    ("RELAY_LEASE_TTL_S", "lease_ttl_s", _positive(float)),
    ("RELAY_INCIDENT_TTL_S", "incident_ttl_s", _positive(float)),
    ("RELAY_INCIDENTS_MAX", "incidents_max", _positive(int)),
    ("RELAY_STORM_MODE", "storm_mode", _choice(STORM_MODES)),
    ("RELAY_STORM_AFTER_S", "storm_after_s", _positive(float)),
    ("RELAY_STORM_AGE_S", "storm_age_s", _positive(float)),
    ("RELAY_REDIS_TIMEOUT_S", "redis_timeout_s", _positive(float)),
    ("RELAY_MAX_BODY_BYTES", "max_body_bytes", _positive(int)),
    ("RELAY_QUEUE_MAX_EVENTS", "queue_max_events", _positive(int)),
    ("RELAY_QUEUE_MAX_MB", "queue_max_mb", _positive(float)),
    ("RELAY_QUEUES_MAX_MB", "queues_max_mb", _positive(float)),
    ("RELAY_OUTBOX_MAX_MB", "outbox_max_mb", _positive(float)),
    ("RELAY_CHANNEL_RETRY_BASE_S", "channel_retry_base_s", _positive(float)),
    ("RELAY_CHANNEL_RETRY_MAX_S", "channel_retry_max_s", _positive(float)),
    ("RELAY_DEAD_LETTER_DAYS", "dead_letter_days", _positive(float)),
    ("RELAY_SELF_CHECK_S", "self_check_s", _positive(float)),
    ("RELAY_RETENTION_S", "retention_s", _positive(float)),
    ("RELAY_HISTORY_DAYS", "history_days", _positive(float)),
    ("RELAY_HISTORY_MAX_ENTRIES", "history_max_entries", _count),
    ("RELAY_HISTORY_MAX_MB", "history_max_mb", _positive(float)),
    ("RELAY_HISTORY_DSN", "history_dsn", _pg_dsn),
    ("RELAY_UI_OPEN_VIEW", "ui_open_view", _flag),
    ("RELAY_UI_SESSION_HOURS", "ui_session_hours", _positive(float)),
    ("RELAY_UI_IDLE_MINUTES", "ui_idle_minutes", _positive(float)),
    ("RELAY_UI_SESSIONS_MAX", "ui_sessions_max", _positive(int)),
    ("RELAY_TRUSTED_PROXIES", "trusted_proxies", networks),
    ("RELAY_ADMIN_ALLOW", "admin_allow", networks),
    ("RELAY_PREFIX", "prefix", _word),
    ("RELAY_THREADS", "threads", _positive(int)),
    ("RELAY_LOG_LEVEL", "log_level", _choice(LOG_LEVELS, upper=True)),
    ("RELAY_LOG_FORMAT", "log_format", _choice(LOG_FORMATS)),
)
