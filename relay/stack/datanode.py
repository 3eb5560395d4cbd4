"""A data node's start (``--role redis-primary`` or ``redis-replica``): the program
supervisord runs, at every start and every restart. It asks the Sentinels this host knows
which node is the service's primary now (``SENTINEL GET-MASTER-ADDR-BY-NAME``), then
becomes redis-server: that primary's replica, or a primary when the answer is itself. A
role's ``--primary`` names the first primary only: started as its replica after a
failover, a promoted node would refuse writes until the Sentinels failed over again, and
sync from a node that may have missed what it had.

The Sentinels asked, first to last: this host's own (``--role sentinel``), then those of
a ``redis+sentinel://`` ``RELAY_REDIS_URL``. The first that names a primary decides. None
answering (the first start, before any Sentinel runs; or all down, or refusing the
password), the node starts as its role says (``--primary``), and its log says so.

What it needs is in a private file (``write_start``) beside the node's configuration:
the Sentinels' password there, never on a command line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from relay.sentinel import is_sentinel
from relay.sentinel import parse as parse_sentinel
from relay.stack.files import write_file
from relay.stack.roles import REPLICA, SENTINEL, Roles

log = logging.getLogger(__name__)

START_FILE = "redis-node-start.json"  # in the state directory: it holds a password
TIMEOUT_S = 1.0  # per Sentinel, to connect and to answer: a start waits a few seconds at most

Address = tuple[str, int]


@dataclass(frozen=True)
class Start:
    service: str
    me: Address  # as the Sentinels name this node (its announced address)
    sentinels: tuple[Address, ...]
    first_primary: str = ""  # HOST:PORT, a replica's --primary ("" for the primary role)
    sentinel_password: str = ""


def start_for(roles: Roles, env: Mapping[str, str], sentinel_password: str) -> Start:
    """What a data node of ``roles`` asks, and whom, at its start."""
    sentinels: list[Address] = []
    if SENTINEL in roles.roles:
        sentinels.append((roles.announce, roles.sentinel_port))
    url = env.get("RELAY_REDIS_URL", "")
    if is_sentinel(url):
        try:
            sentinels += parse_sentinel(url).hosts
        except ValueError:
            pass  # the relay's settings say what is wrong with it
    return Start(roles.service, (roles.announce, roles.redis_port),
                 tuple(dict.fromkeys(sentinels)),
                 roles.primary if REPLICA in roles.roles else "", sentinel_password)


def write_start(path: Path, start: Start, group: int | None = None) -> str:
    """The file ``main`` reads (mode 600, or 640 for ``group``); its text."""
    text = json.dumps({"service": start.service, "me": list(start.me),
                       "sentinels": [list(s) for s in start.sentinels],
                       "first_primary": start.first_primary,
                       "sentinel_password": start.sentinel_password}, indent=1) + "\n"
    write_file(path, text, 0o640 if group is not None else 0o600, group)
    return text


def read_start(path: Path) -> Start:
    raw = json.loads(path.read_text())
    return Start(raw["service"], (raw["me"][0], int(raw["me"][1])),
                 tuple((h, int(p)) for h, p in raw["sentinels"]), raw["first_primary"],
                 raw["sentinel_password"])


Ask = Callable[[Address, str, str], "Address | None"]


def ask(sentinel: Address, service: str, password: str) -> Address | None:
    """The primary ``sentinel`` names for ``service`` (None: it knows no such service);
    RedisError when it does not answer or refuses the password."""
    client = redis.Redis(host=sentinel[0], port=sentinel[1], password=password or None,
                         socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                         decode_responses=True)
    try:
        found = client.execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    finally:
        client.close()
    return (str(found[0]), int(found[1])) if found else None


def current_primary(start: Start, asking: Ask = ask) -> Address | None:
    """The primary the first Sentinel that knows the service names (None: none does)."""
    for sentinel in start.sentinels:
        where = f"{sentinel[0]}:{sentinel[1]}"
        try:
            found = asking(sentinel, start.service, start.sentinel_password)
        except redis.RedisError as exc:  # the message names no password
            log.warning("Sentinel %s did not answer (%s: %s)", where, type(exc).__name__, exc)
            continue
        if found is None:
            log.warning("Sentinel %s knows no service %r", where, start.service)
            continue
        log.info("Sentinel %s names %s:%s the primary of %r", where, *found, start.service)
        return found
    return None


def replicaof(start: Start, asking: Ask = ask) -> list[str]:
    """redis-server's arguments for this node's place: ``--replicaof HOST PORT``, or none
    (a primary)."""
    found = current_primary(start, asking)
    if found == start.me:
        log.info("starting as the primary (the Sentinels' answer is this node)")
        return []
    if found is not None:
        log.info("starting as a replica of %s:%s, the current primary", *found)
        return ["--replicaof", found[0], str(found[1])]
    if not start.first_primary:
        log.warning("no Sentinel answered (asked: %s); starting as the primary (--role "
                    "redis-primary)", _names(start.sentinels))
        return []
    log.warning("no Sentinel answered (asked: %s); starting as a replica of %s (--primary)",
                _names(start.sentinels), start.first_primary)
    host, port = start.first_primary.rsplit(":", 1)
    return ["--replicaof", host, port]


def _names(sentinels: Sequence[Address]) -> str:
    return ", ".join(f"{h}:{p}" for h, p in sentinels) or "none known"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m relay.stack.datanode START_FILE REDIS_SERVER [ARGS...]``: decide, then
    become redis-server (exec: supervisord's signals reach it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        sys.exit("usage: python -m relay.stack.datanode START_FILE REDIS_SERVER [ARGS...]")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="pd-relay data node: %(levelname)s %(message)s")
    start = read_start(Path(args[0]))
    server = [*args[1:], *replicaof(start)]
    sys.stderr.flush()
    os.execv(server[0], server)


if __name__ == "__main__":
    main()
