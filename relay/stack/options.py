"""What a stack is started with: the ``PD_RELAY_*`` options of ``pd-relay stack`` (ports,
node count, directories, mode), read from the environment in one place, every bad value
reported at once; and the ``RELAY_*`` settings handed on to the relay's processes."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from relay.errors import ConfigError
from relay.memory import capped_mb, caps_named, least_redis_mb
from relay.settings import Settings
from relay.stack import account
from relay.stack.password import redis_socket
from relay.stack.render import Limits
from relay.stack.roles import Roles

MODES = ("auto", "native", "docker")
TOPOLOGIES = ("single", "sentinel")  # docker compose: one Redis, or the sentinel profile


@dataclass(frozen=True)
class StackOptions:
    home: Path  # the project's directory: run/ and data/ default to it
    run_dir: Path
    data_dir: Path
    keys_file: Path
    port: int = 8080
    bind: str = "0.0.0.0"
    nodes: int = 2
    workers: int = 2  # worker processes, each serving every key (one the others' standby)
    ingress_port: int = 8081
    redis_port: int = 6379
    sim_port: int = 8090
    mode: str = "auto"
    demo: bool = False
    limits: Limits = Limits()  # per client at nginx, and who may read /metrics, /readyz
    redis_maxmemory_mb: int = 0  # the stack's Redis; 0: from RELAY_QUEUES_MAX_MB (redis_memory)
    tls_cert: Path | None = None  # with tls_key: nginx serves HTTPS only (relay/stack/tls.py)
    tls_key: Path | None = None
    # started as root: the unprivileged user every process runs as ("": the caller), and
    # the system directory of run/, data/ and the venv (relay/stack/account.py)
    user: str = ""
    system_dir: Path | None = None
    roles: Roles = Roles()  # several hosts: what this one plays (none: the whole stack)
    topology: str = "single"  # docker compose's Redis: one, or a replicated primary
    # RELAY_HISTORY=postgres without RELAY_HISTORY_DSN: the stack's own PostgreSQL keeps
    # the history's record (relay/stack/history.py), on 127.0.0.1:postgres_port
    history: str = ""
    postgres_port: int = 5433

    @property
    def state_dir(self) -> Path:
        """What root writes and reads back (stack.json, pids, supervisord's and nginx's and
        Redis's configuration, the private copies, the Redis password): the run directory,
        or, started as root, a directory of root's (``system_dir``/state) that the service
        user may read but not change: in the user's run directory it could plant links
        and files for root to follow."""
        return self.system_dir / "state" if self.user and self.system_dir else self.run_dir

    @property
    def supervisor_dir(self) -> Path:
        """supervisord's socket, pid and logs, and nginx's pid and temporary files: where
        they are made by whoever runs them: the run directory, or the state directory when
        supervisord and nginx's master keep root (a port below 1024)."""
        return self.state_dir if self.user and self.privileged_port else self.run_dir

    @property
    def secrets_dir(self) -> Path:
        """Where the stack's Redis password is kept: beside Redis's data, or, started as
        root, in the state directory (root writes it; the data directory is the user's)."""
        return self.state_dir if self.user else self.data_dir

    @property
    def privileged_port(self) -> bool:
        """nginx binds a port only root may: its master keeps root (its workers do not)."""
        return self.port < 1024

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def tls(self) -> tuple[Path, Path] | None:
        """The certificate and key nginx serves, if any."""
        return (self.tls_cert, self.tls_key) if self.tls_cert and self.tls_key else None

    @property
    def demo_tls(self) -> bool:
        """Serving the demo's self-signed certificate (clients need it as their CA)."""
        return self.demo and self.tls_cert == self.state_dir / "tls" / "demo-cert.pem"

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path, demo: bool = False,
                 euid: int | None = None) -> StackOptions:
        """The options ``env`` holds; ``euid`` (default this process's) 0: the system
        layout, an unprivileged service user (``account``)."""
        euid = os.geteuid() if euid is None else euid
        values: dict[str, Any] = {}
        values["user"], problems = account.user_option(env, euid)
        top = home
        if values["user"]:
            values["system_dir"] = top = account.system_dir(env)

        def read(name: str, attr: str, parse: Callable[[str], Any]) -> None:
            raw = env.get(name, "")
            if raw:
                try:
                    values[attr] = parse(raw)
                except ValueError as exc:
                    problems.append(f"{name}={raw!r}: {exc}")

        read("PD_RELAY_PORT", "port", _port)
        read("PD_RELAY_BIND", "bind", str)
        read("PD_RELAY_INGRESS_NODES", "nodes", _count)
        read("PD_RELAY_WORKER_PROCESSES", "workers", _count)
        read("PD_RELAY_INGRESS_PORT", "ingress_port", _port)
        read("PD_RELAY_REDIS_PORT", "redis_port", _port)
        read("PD_RELAY_SIM_PORT", "sim_port", _port)
        read("PD_RELAY_MODE", "mode", _mode)
        read("PD_RELAY_TOPOLOGY", "topology", _topology)
        read("PD_RELAY_REDIS_MAXMEMORY_MB", "redis_maxmemory_mb", _count)
        read("PD_RELAY_POSTGRES_PORT", "postgres_port", _port)
        read("RELAY_HISTORY", "history", _history)
        limits: dict[str, Any] = {}
        for name, attr in (("RATE", "rate"), ("BURST", "burst"), ("CONNECTIONS", "connections")):
            raw = env.get(f"PD_RELAY_CLIENT_{name}", "")
            try:
                if raw:
                    limits[attr] = _count(raw)
                    if name == "CONNECTIONS" and limits[attr] > 65535:
                        raise ValueError("nginx takes at most 65535")
            except ValueError as exc:
                problems.append(f"PD_RELAY_CLIENT_{name}={raw!r}: {exc}")
        allow = env.get("PD_RELAY_ADMIN_ALLOW", "")
        if allow:
            limits["admin_allow"] = tuple(allow.replace(",", " ").split())
            problems += [f"PD_RELAY_ADMIN_ALLOW: {a!r} is not an address or network"
                         for a in limits["admin_allow"] if not _network(a)]
        values["limits"] = Limits(**limits)
        tls = [env.get(f"PD_RELAY_TLS_{part}", "") for part in ("CERT", "KEY")]
        if all(tls):
            values["tls_cert"], values["tls_key"] = (Path(p).resolve() for p in tls)
        elif any(tls):
            problems.append("PD_RELAY_TLS_CERT and PD_RELAY_TLS_KEY go together: set both "
                            "(a certificate and its private key, PEM) or neither")
        if problems:
            raise ConfigError(problems)
        run_dir = Path(env.get("PD_RELAY_RUN_DIR") or top / "run").resolve()
        data_dir = Path(env.get("PD_RELAY_DATA_DIR") or top / "data").resolve()
        if demo:
            values.setdefault("bind", "127.0.0.1")
            state = top / "state" if values.get("user") else run_dir  # see state_dir
            keys_file = state / "demo-keys.txt"
        else:
            keys_file = Path(env.get("RELAY_KEYS_FILE") or home / "pd_routing_keys.txt").resolve()
        return cls(home=home.resolve(), run_dir=run_dir, data_dir=data_dir,
                   keys_file=keys_file, demo=demo, **values)

    def ingress_sockets(self) -> list[Path]:
        """Where the native stack's ingress nodes listen (nginx's upstreams)."""
        return [self.run_dir / f"ingress-{n}.sock" for n in range(self.nodes)]

    @property
    def redis_socket(self) -> Path:
        return redis_socket(self.run_dir)

    def public(self) -> dict[str, Any]:
        """The options as recorded in the run directory (``Recorded``)."""
        return {name: str(value) if isinstance(value, Path) else
                dict(value.__dict__) if isinstance(value, Limits) else
                value.public() if isinstance(value, Roles) else value
                for name, value in self.__dict__.items()
                if (name != "roles" or value) and (name != "topology" or value != "single")
                and (name != "history" or value)
                and (name != "postgres_port" or value != 5433)}

    @classmethod
    def recorded(cls, values: Mapping[str, Any]) -> StackOptions:
        paths = ("home", "run_dir", "data_dir", "keys_file", "tls_cert", "tls_key",
                 "system_dir")
        found: dict[str, Any] = {name: Path(v) if name in paths and v is not None else v
                                 for name, v in values.items()}
        if isinstance(found.get("limits"), dict):
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                      for k, v in found["limits"].items()}
            found["limits"] = Limits(**fields)
        if isinstance(found.get("roles"), dict):
            found["roles"] = Roles.recorded(found["roles"])
        return cls(**found)


IGNORED = {
    "PD_RELAY_INGRESS_PORT": "the ingress nodes listen on Unix sockets in the run directory",
    "PD_RELAY_REDIS_PORT": "the stack's Redis listens on a Unix socket in the run directory",
}


def ignored_options(env: Mapping[str, str]) -> list[str]:
    """A warning for each option set in ``env`` that no stack reads any more."""
    return [f"{name} is ignored: {why} (no TCP port); unset it" for name, why in IGNORED.items()
            if env.get(name)]


def redis_memory(options: StackOptions, settings: Settings) -> StackOptions:
    """``options`` with the stack's Redis ``maxmemory``: the one asked for, else twice the
    queues' cap, the other caps (outbox, history, incidents: ``capped_mb``) and 64 MB
    (dead letters, counters and RQ's jobs live beside them, and a worker needs room to
    drain); ConfigError when asked for less than ``least_redis_mb``."""
    least = least_redis_mb(settings)
    asked = options.redis_maxmemory_mb
    if asked and asked < least:
        raise ConfigError([
            f"PD_RELAY_REDIS_MAXMEMORY_MB={asked} leaves Redis no room beside "
            f"{caps_named(settings)}: give it at least {least}, or lower the caps"])
    derived = math.ceil(settings.queues_max_mb * 2) + capped_mb(settings) + 64
    return replace(options, redis_maxmemory_mb=asked or derived)


def relay_env(env: Mapping[str, str]) -> dict[str, str]:
    """The relay's settings found in ``env``: every name ``Settings`` reads, set and not
    empty (an empty one means its default, as ``Settings.from_env`` reads it)."""
    return {name: env[name] for name in Settings.env_names() if env.get(name)}


def with_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with its ``RELAY_*`` settings replaced by ``settings``:
    the environment of a process of the stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    # only the relay's settings: a recorded set (stack.json) never names PYTHONPATH,
    # LD_PRELOAD or any other variable for root's `relay` and `status` to run with
    names = set(Settings.env_names())
    env.update({k: v for k, v in settings.items() if k in names})
    return env


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a port number, 1 to 65535")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text == "all"
    return True


def _mode(raw: str) -> str:
    if raw not in MODES:
        raise ValueError("must be one of " + ", ".join(MODES))
    return raw


def _history(raw: str) -> str:
    """RELAY_HISTORY: ``postgres`` (a local PostgreSQL keeps the record unless
    RELAY_HISTORY_DSN names one) or ``stream`` (the stream alone, as without it)."""
    if raw not in ("postgres", "stream"):
        raise ValueError("want postgres (a local PostgreSQL keeps the history's record) or "
                         "stream")
    return "" if raw == "stream" else raw


def _topology(raw: str) -> str:
    if raw not in TOPOLOGIES:
        raise ValueError("must be one of " + ", ".join(TOPOLOGIES))
    return raw


def home_dir() -> Path:
    """The project's directory: ``start.sh`` runs from there; else the current one."""
    return Path(os.environ.get("PD_RELAY_HOME") or os.getcwd())
