"""Docker compose's Sentinel topology (``PD_RELAY_TOPOLOGY=sentinel``): the services of
docker-compose.yml's ``sentinel`` profile (a replica and three Sentinels) get their
commands here, written by the renderers of ``pd-relay stack up --role`` (``roles``), and
the relay's processes the Sentinel URL. The passwords reach each container in its
environment and the configuration through a here-document, never a command line."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from relay.stack.render import redis_argv
from relay.stack.roles import (
    AUTH_LINES,
    PRIMARY,
    REPLICA,
    SENTINEL,
    Roles,
    redis_conf,
    sentinel_auth,
    sentinel_conf,
)

SERVICE = "mymaster"
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
QUORUM = 2
DATA = "$PD_RELAY_REDIS_PASSWORD"  # expanded by the container's shell
OWN = "$PD_RELAY_SENTINEL_PASSWORD"


def sentinel_url(password: str) -> str:
    """The relay's ``RELAY_REDIS_URL`` in the topology."""
    hosts = ",".join(f"{name}:26379" for name in SENTINELS)
    return f"redis+sentinel://:{password}@{hosts}/{SERVICE}/0"


def data_node_script(argv: list[str], conf: str) -> str:
    """``sh -c``'s script: redis-server reading ``conf`` (its password) on its standard
    input ($$: compose leaves the $ to the container's shell)."""
    body = "".join(line + "\n" for line in conf.splitlines() if not line.startswith("#"))
    return f"exec {shlex.join(argv)} <<EOF\n{body}EOF\n".replace("$", "$$")


def data_nodes(maxmemory_mb: int, replicas: int) -> dict[str, str]:
    """The primary's and the replica's scripts: both refuse writes without ``replicas``
    replicas (Sentinel may promote the replica)."""
    argv = redis_argv("redis-server", 6379, Path("/data"), None, maxmemory_mb, config="-")
    return {
        "redis": data_node_script(argv, redis_conf(Roles((PRIMARY,), "redis"), DATA, replicas)),
        "redis-replica": data_node_script(argv, redis_conf(
            Roles((REPLICA,), "redis-replica", primary="redis:6379"), DATA, replicas)),
    }


def sentinel_script(name: str, own_password: bool) -> str:
    """A Sentinel's script: its file written on its volume the first time only (it keeps
    the current primary and its peers there), later its password lines replaced by the
    ones in its environment now (``roles.write_sentinel_conf``), then the Sentinel on it."""
    roles = Roles((SENTINEL,), name, monitor="redis:6379", quorum=QUORUM, service=SERVICE)
    own = OWN if own_password else ""
    conf = sentinel_conf(roles, DATA, own, "/data", bind="0.0.0.0")
    auth = "".join(line + "\n" for line in sentinel_auth(roles, DATA, own))
    strip = " ".join(f"-e '/^{prefix}/d'" for prefix in AUTH_LINES)
    return ("if [ -s /data/sentinel.conf ]; then\n"
            f"sed -i {strip} /data/sentinel.conf\n"
            f"cat >> /data/sentinel.conf <<EOF\n{auth}EOF\n"
            f"else cat > /data/sentinel.conf <<EOF\n{conf}EOF\nfi\n"
            "exec redis-server /data/sentinel.conf --sentinel\n").replace("$", "$$")


def services(maxmemory_mb: int, password: str, sentinel_password: str,
             replicas: int) -> dict[str, Any]:
    """The override's entries for the topology's Redis and Sentinel services (compose
    reads a ``$`` in a value as a variable: ``$$`` keeps it, as in the relay's)."""
    password, sentinel_password = password.replace("$", "$$"), sentinel_password.replace("$", "$$")
    found: dict[str, Any] = {}
    for name, script in data_nodes(maxmemory_mb, replicas).items():
        found[name] = {"command": ["sh", "-c", script],
                       "environment": {"PD_RELAY_REDIS_PASSWORD": password,
                                       "REDISCLI_AUTH": password}}
    for name in SENTINELS:
        environment = {"PD_RELAY_REDIS_PASSWORD": password}
        if sentinel_password:  # its own, asked of clients and given to its peers
            environment.update(PD_RELAY_SENTINEL_PASSWORD=sentinel_password,
                               REDISCLI_AUTH=sentinel_password)
        found[name] = {"command": ["sh", "-c", sentinel_script(name, bool(sentinel_password))],
                       "environment": environment}
    return found
