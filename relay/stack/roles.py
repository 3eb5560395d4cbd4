"""The roles a host plays in a stack spread over several machines (``pd-relay stack up
--role ...``): a Redis data node (the first primary, or a replica of it), a Sentinel, and
the relay itself against a ``redis+sentinel://`` URL. No role: today's single-host stack,
its own Redis on a Unix socket.

Across hosts Redis and Sentinel listen on TCP, on the host's own address (``--announce``),
with a password: the data nodes' (``PD_RELAY_REDIS_PASSWORD``, the same on every host and
in the relay's URL) and, if set, the Sentinels' own (``RELAY_SENTINEL_PASSWORD``). Both
are written to private configuration files, never to a command line. Every data node is
configured with ``min-replicas-to-write`` (a replica too: Sentinel may promote it), so a
primary cut off from its replicas refuses writes instead of taking events a failover
would throw away.

A Sentinel rewrites its own file as it learns (the current primary, its replicas, the
other Sentinels, the epoch): it is written once, and kept by later starts, or a restart
would point it back at a primary that may be a replica by now.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.errors import ConfigError
from relay.sentinel import is_sentinel
from relay.sentinel import parse as parse_sentinel
from relay.stack.files import write_file

PRIMARY, REPLICA, SENTINEL, RELAY = "redis-primary", "redis-replica", "sentinel", "relay"
ROLES = (PRIMARY, REPLICA, SENTINEL, RELAY)
MAX_LAG_S = 10  # min-replicas-max-lag: a replica silent longer does not count
DOWN_AFTER_MS = 5000  # a primary silent this long is down (then a quorum agrees, fails over)
FAILOVER_TIMEOUT_MS = 60000


@dataclass(frozen=True)
class Roles:
    roles: tuple[str, ...] = ()
    announce: str = ""  # this host's address: Redis and Sentinel bind it, and announce it
    redis_port: int = 6379
    sentinel_port: int = 26379
    primary: str = ""  # HOST:PORT, a replica's first primary
    monitor: str = ""  # HOST:PORT, the primary a Sentinel starts watching
    quorum: int = 2
    service: str = "mymaster"

    def __bool__(self) -> bool:
        return bool(self.roles)

    @property
    def data_node(self) -> bool:
        return PRIMARY in self.roles or REPLICA in self.roles

    @property
    def relay(self) -> bool:
        """Whether this host runs the relay's processes (no role: the whole stack)."""
        return not self.roles or RELAY in self.roles

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__, roles=list(self.roles))

    @classmethod
    def recorded(cls, values: Mapping[str, Any]) -> Roles:
        return cls(**dict(values, roles=tuple(values.get("roles", ()))))

    @classmethod
    def parse(cls, roles: Sequence[str], announce: str = "", redis_port: int = 6379,
              sentinel_port: int = 26379, primary: str = "", monitor: str = "",
              quorum: int = 2, service: str = "mymaster") -> Roles:
        """The roles asked for, every problem listed at once (ConfigError)."""
        problems = [f"--role {r}: not a role (one of {', '.join(ROLES)})"
                    for r in roles if r not in ROLES]
        if PRIMARY in roles and REPLICA in roles:
            problems.append("--role redis-primary and redis-replica: a host runs one Redis")
        if REPLICA in roles and not primary:
            problems.append("--role redis-replica needs --primary HOST:PORT (the first "
                            "primary's address)")
        if SENTINEL in roles and not monitor:
            problems.append("--role sentinel needs --monitor HOST:PORT (the first "
                            "primary's address)")
        if (PRIMARY in roles or REPLICA in roles or SENTINEL in roles) and not announce:
            problems.append("--announce ADDRESS is needed with a Redis or Sentinel role: "
                            "the address other hosts reach this one at")
        for flag, value in (("--primary", primary), ("--monitor", monitor)):
            if value and not _address(value):
                problems.append(f"{flag} {value!r}: give HOST:PORT")
        if quorum < 1:
            problems.append(f"--quorum {quorum}: must be 1 or more")
        if not service or not service.replace("-", "").replace("_", "").isalnum():
            problems.append(f"--service {service!r}: letters, digits, - and _ only")
        if problems:
            raise ConfigError(problems)
        return cls(tuple(dict.fromkeys(roles)), announce, redis_port, sentinel_port, primary,
                   monitor, quorum, service)


def passwords(roles: Roles, env: Mapping[str, str]) -> tuple[str, str]:
    """The data nodes' password and the Sentinels' own ("" when not set); ConfigError
    when a Redis or Sentinel role has no data password: across hosts Redis listens on
    TCP, and never without one. The data password is ``PD_RELAY_REDIS_PASSWORD``, else
    the one in a ``redis+sentinel://`` ``RELAY_REDIS_URL`` (the relay's, on a host that
    runs it: what ``reload`` has, as the stack records only the relay's settings)."""
    password = env.get("PD_RELAY_REDIS_PASSWORD", "")
    url = env.get("RELAY_REDIS_URL", "")
    problems = []
    if is_sentinel(url):
        try:
            in_url = parse_sentinel(url).password or ""
        except ValueError:
            in_url = ""  # the relay's settings say what is wrong with it
        if password and in_url and in_url != password:
            problems.append("PD_RELAY_REDIS_PASSWORD and the password in RELAY_REDIS_URL "
                            "differ: the relay would not get into this host's Redis")
        password = password or in_url
    if (roles.data_node or SENTINEL in roles.roles) and not password:
        problems.append("PD_RELAY_REDIS_PASSWORD is needed with a Redis or Sentinel role: "
                        "the data nodes' password, the same on every host (and in "
                        "RELAY_REDIS_URL)")
    for name, value in (("PD_RELAY_REDIS_PASSWORD", password),
                        ("RELAY_SENTINEL_PASSWORD", env.get("RELAY_SENTINEL_PASSWORD", ""))):
        if value and not _fits(value):
            problems.append(f"{name}: no spaces, quotes or line breaks (Redis reads it "
                            "from a configuration file)")
    if problems:
        raise ConfigError(problems)
    return password, env.get("RELAY_SENTINEL_PASSWORD", "")


def min_replicas(env: Mapping[str, str]) -> int:
    """``RELAY_MIN_REPLICAS`` as the relay reads it with a Sentinel URL (default 1): a
    data node refuses the writes the relay would not count as stored."""
    raw = env.get("RELAY_MIN_REPLICAS", "")
    if not raw:
        return 1
    if not raw.isdigit():
        raise ConfigError([f"RELAY_MIN_REPLICAS={raw!r}: must be 0 or more"])
    return int(raw)


def redis_conf(roles: Roles, password: str, replicas: int, replicaof: bool = True) -> str:
    """A data node's private configuration (its address and port are on its command
    line, ``render.redis_argv``): the password it asks and gives its primary, the
    writes it refuses without ``replicas`` replicas, and, a replica, its first primary
    (unless not ``replicaof``: a host's data node is told at each start, after asking
    the Sentinels, ``relay.stack.datanode``)."""
    lines = ["# generated by pd-relay stack: do not edit",
             f"requirepass {password}", f"masterauth {password}",
             f"replica-announce-ip {roles.announce}",
             f"min-replicas-to-write {replicas}", f"min-replicas-max-lag {MAX_LAG_S}"]
    if replicaof and REPLICA in roles.roles:
        host, port = roles.primary.rsplit(":", 1)
        lines.append(f"replicaof {host} {port}")
    return "\n".join(lines) + "\n"


def sentinel_conf(roles: Roles, password: str, sentinel_password: str,
                  directory: Path | str, bind: str = "") -> str:
    """A Sentinel's first configuration (it rewrites the file afterwards); it binds
    ``bind`` (default its announced address). Names rather than addresses (compose's
    services) are resolved, and announced as names."""
    host, port = roles.monitor.rsplit(":", 1)
    name = roles.service
    names = not (_ip(host) and _ip(roles.announce))
    lines = ["# written by pd-relay stack once; Sentinel keeps its state here",
             f"bind {bind or roles.announce}", f"port {roles.sentinel_port}", f"dir {directory}",
             *(["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"]
               if names else []),
             f"sentinel announce-ip {roles.announce}",
             f"sentinel announce-port {roles.sentinel_port}",
             f"sentinel monitor {name} {host} {port} {roles.quorum}",
             f"sentinel auth-pass {name} {password}",
             f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
             f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
             f"sentinel parallel-syncs {name} 1"]
    if sentinel_password:  # clients and the other Sentinels give it
        lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
    return "\n".join(lines) + "\n"


# a Sentinel's lines with the passwords (it writes the last one itself, for requirepass)
AUTH_LINES = ("sentinel auth-pass ", "requirepass ", "sentinel sentinel-pass ", "user default ")


def sentinel_auth(roles: Roles, password: str, sentinel_password: str) -> list[str]:
    """The lines of a Sentinel's file that hold the passwords (``sentinel_conf``'s)."""
    lines = [f"sentinel auth-pass {roles.service} {password}"]
    if sentinel_password:
        lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
    return lines


def write_sentinel_conf(path: Path, text: str, auth: Sequence[str] = ()) -> bool:
    """Write a Sentinel's file unless one is there (its state); one that is there gets
    the passwords of ``auth`` (``sentinel_auth``) when they changed, the rest kept: with
    old ones the Sentinel could log in to no data node, and no failover could happen.
    Whether it was written."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, text)
        return True
    lines = path.read_text().splitlines()
    found = {tuple(shlex.split(line)) for line in lines
             if line.startswith(AUTH_LINES[:3])}  # (Sentinel quotes some as it rewrites)
    if not auth or found == {tuple(line.split()) for line in auth}:
        return False
    kept = [line for line in lines if not line.startswith(AUTH_LINES)]
    write_file(path, "\n".join([*kept, *auth]) + "\n")
    return True


def _address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _fits(value: str) -> bool:
    return not any(c.isspace() or c in "\"'\\" for c in value)
