"""Redis through Sentinel: the ``redis+sentinel://`` URL and the clients made from it.

``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` names the
Sentinels (port 26379 when left out), the service (the name they monitor) and the
database; the userinfo's password is the data nodes' (RELAY_SENTINEL_PASSWORD is the
Sentinels' own). A client asks the Sentinels for the primary each time it connects, so
after a failover it reaches the new primary by itself: redis-py's
SentinelManagedConnection turns a ``READONLY`` answer (a primary made a replica) into a
dropped connection, and a dropped connection reconnects through the Sentinels. A
script's write refused the same way (Redis 6 wraps it: ``Error running script ...
-READONLY ...``) is taken alike, and so is ``NOREPLICAS`` from a primary the Sentinels
no longer name (after SENTINEL FAILOVER the old primary stays one until they reach it
again, up to 10 s; ``min-replicas-to-write`` has it refuse writes meanwhile)
(``PrimaryConnection``). A subscriber only reads: it asks
``moved`` now and then and subscribes again on the new primary (worker.wake).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel(url: str) -> bool:
    return url.lower().startswith(SCHEME + "://")


def parse(url: str) -> SentinelUrl:
    """The URL's parts; ValueError naming every bad part at once."""
    parts = urlsplit(url)
    problems: list[str] = []
    auth, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if auth:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # user@: redis-py's convention is a password alone
            username, password = None, unquote(user)
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = item.strip(), str(DEFAULT_PORT)
        if not host:
            problems.append(f"a Sentinel's host is missing ({item.strip() or 'empty'!r})")
            continue
        if not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"Sentinel {host}: its port must be a number, 1 to 65535")
            continue
        hosts.append((host.strip("[]"), int(port)))
    if not hostlist.strip():
        problems.append("name at least one Sentinel (host:port)")
    path = [piece for piece in parts.path.split("/") if piece]
    service = path[0] if path else ""
    db = path[1] if len(path) > 1 else "0"
    if not service:
        problems.append("name the service the Sentinels monitor (…/<service>[/<db>])")
    if not db.isdigit():
        problems.append(f"the database must be a number ({db!r})")
    if len(path) > 2 or parts.query or parts.fragment:
        problems.append("nothing may follow /<service>/<db>")
    if problems:
        raise ValueError("; ".join(problems))
    return SentinelUrl(tuple(hosts), unquote(service), int(db), username, password)


READONLY = "-READONLY You can't write against a read only replica"
NOREPLICAS = "NOREPLICAS Not enough good replicas to write"


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary that also takes a script's READONLY error (Redis 6)
    for what it is: the node was made a replica; ask the Sentinels again. And asks them
    whenever it connects again: redis-py's send reconnects a dropped connection to the
    address it had (only the pool's checkout asks the Sentinels), so a connection held
    across commands (relay.store.EventStore's) kept dialling a dead primary."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            if READONLY in str(exc):
                self.disconnect()  # type: ignore[no-untyped-call]
                raise redis.exceptions.ConnectionError("the primary is now a replica") from exc
            if NOREPLICAS in str(exc) and self._replaced():
                self.disconnect()  # type: ignore[no-untyped-call]
                raise redis.exceptions.ConnectionError("the primary was replaced") from exc
            raise

    def _replaced(self) -> bool:
        """Whether the Sentinels name another primary than this connection's (a primary
        that lost its replicas to a failover refuses writes: NOREPLICAS)."""
        try:
            host, port = self.connection_pool.get_master_address()
        except redis.exceptions.ConnectionError:
            return False
        return (str(host), int(port)) != (str(self.host), int(self.port))


def moved(client: redis.Redis, connection: Any) -> bool:
    """Whether ``connection`` (a subscriber's, of ``client``'s pool) is no longer to the
    primary the Sentinels name (always False for a plain URL's client). Asks the
    Sentinels: call it every few seconds, not per command."""
    pool: Any = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool) or connection is None:
        return False
    host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    return (str(connection.host), int(connection.port)) != (str(host), int(port))


def sentinel_for(url: str, sentinel_password: str, timeout_s: float) -> Sentinel:
    """The Sentinels of ``url`` (their own password, if any; quick timeouts: one that
    does not answer is passed over for the next)."""
    found = parse(url)
    return Sentinel(list(found.hosts), sentinel_kwargs={
        "password": sentinel_password or None, "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s})


def master_client(url: str, sentinel_password: str, **options: Any) -> redis.Redis:
    """A client of the current primary (``options``: redis.Redis's connection options)."""
    found = parse(url)
    sentinels = sentinel_for(url, sentinel_password, options["socket_connect_timeout"])
    client: redis.Redis = sentinels.master_for(
        found.service, connection_class=PrimaryConnection, db=found.db,
        username=found.username, password=found.password, **options)
    return client
