"""The event store: how accepted events are written to and read from Redis.

A stored event is compact JSON ``{"t": accepted_ms, "k": "alert"|"change", "e": event}``
with the routing key taken out (the queue it sits in says which key it goes to).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings


@dataclass(frozen=True)
class Record:
    kind: str
    event: dict[str, Any]
    accepted_ms: int

    @property
    def action(self) -> str:
        """What the event does, for logs: trigger, acknowledge, resolve or change."""
        return str(self.event.get("event_action", "change"))

    def encode(self) -> str:
        return json.dumps(
            {"t": self.accepted_ms, "k": self.kind, "e": self.event},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> Record:
        data = json.loads(raw)
        return cls(kind=data["k"], event=data["e"], accepted_ms=int(data["t"]))


def connect(settings: Settings, block_s: float = 0.0) -> redis.Redis:
    """A client whose socket timeout outlasts any blocking command of ``block_s``."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s + block_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        # One quick retry for a blip; then fail, so the ingress answers 503 at once.
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1),
        decode_responses=True,
    )


def now_ms() -> int:
    return int(time.time() * 1000)


class EventStore:
    """Writes accepted events; one caller at a time (the ingress's GroupCommit leader).

    The hot path talks to one connection of the client's pool directly: redis-py's
    command machinery (pool checkout, retry wrapper, event hooks) cost 115 us of CPU per
    call where the connection's own send and read cost 67 us (docs/BENCHMARKS.md).
    """

    def __init__(self, client: redis.Redis, names: Names) -> None:
        self.client = client
        self.names = names
        self.script = Scripts(client).enqueue
        self.connection: Any = None

    def enqueue(self, batch: Iterable[tuple[str, str]]) -> None:
        """Append (key id, encoded record) pairs atomically, in one round trip.

        Raises redis.RedisError when nothing may have been stored.
        """
        grouped: dict[str, list[str]] = {}
        for kid, raw in batch:
            grouped.setdefault(kid, []).append(raw)
        keys: list[str] = []
        counts: list[int] = []
        raws: list[str] = []
        for kid, group in grouped.items():
            keys += [self.names.queue(kid), self.names.stats(kid)]
            counts.append(len(group))
            raws += group
        self._evalsha(keys, [*counts, *raws])

    def _evalsha(self, keys: list[str], args: list[Any]) -> Any:
        if self.connection is None:
            self.connection = self.client.connection_pool.get_connection()
        connection = self.connection
        command = ("EVALSHA", self.script.sha, len(keys), *keys, *args)
        try:
            connection.send_command(*command)
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # Redis restarted: its script cache is empty
            connection.send_command("SCRIPT", "LOAD", self.script.script)
            connection.read_response()
            connection.send_command(*command)
            return connection.read_response()
