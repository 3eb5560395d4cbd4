"""The event store: how accepted events are written to and read from Redis.

A stored event is compact JSON ``{"t": accepted_ms, "k": "alert"|"change", "e": event,
"i": id}`` with the routing key taken out (the queue it sits in says which key it goes
to); the id names its story (``relay.history``). Events stored before ids have none. A
trigger that replaced repeats waiting before it (storm mode, ``worker.lanes``) also has
``"m": [how many it stands for, when the first was accepted]`` right after ``t``.

A key's lanes (storm mode) may hold gaps where an event left out of turn: an empty
string where a merged event moved to a more urgent lane or one was purged, or, written
by the previous release's purge, ``~`` and the event's dedup_key and action
(``{"k":"alert","e":{...}}``: its worker counts it as gone from its incident when it
reaches it). Nothing reads a gap as an event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from relay.errors import NotReplicated
from relay.keys import key_id
from relay.names import Names
from relay.owners import Owned
from relay.router import Route
from relay.scripts import Scripts
from relay.sentinel import is_sentinel, master_client, moved
from relay.settings import Settings
from relay.shed import Shed

T = TypeVar("T")
log = logging.getLogger(__name__)

# What the worker may add to a merged trigger it sends (``custom_details.pd_relay``, and
# the object holding it when the event had none: worker.lanes.outgoing), at most; the
# ingress admits an event only with this room left (relay.body.encode)
MERGE_ROOM = 160


@dataclass(frozen=True)
class Record:
    kind: str
    event: dict[str, Any]
    accepted_ms: int
    id: str = ""
    repeats: int = 1  # how many triggers this one stands for (storm mode merges repeats)
    first_ms: int = 0  # when the first of them was accepted (repeats > 1)

    @property
    def action(self) -> str:
        """What the event does, for logs: trigger, acknowledge, resolve or change."""
        return str(self.event.get("event_action", "change"))

    def encode(self) -> str:
        """Compact JSON; ValueError for NaN or Infinity, which JSON cannot hold, or for
        nesting deeper than the encoder goes."""
        fields: dict[str, Any] = {"t": self.accepted_ms}
        if self.repeats > 1:
            fields["m"] = [self.repeats, self.first_ms]
        fields.update(k=self.kind, e=self.event)
        if self.id:
            fields["i"] = self.id
        try:
            return json.dumps(fields, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
        except RecursionError:
            raise ValueError("nested too deeply to encode") from None

    @classmethod
    def decode(cls, raw: str | bytes) -> Record:
        """ValueError, KeyError or TypeError when ``raw`` is not a stored event (one nested
        deeper than Python's decoder goes, stored by an older release, included)."""
        try:
            data = json.loads(raw)
        except RecursionError:
            raise ValueError("nested too deeply to decode") from None
        if data["k"] not in ("alert", "change") or not isinstance(data["e"], dict):
            raise ValueError("not a stored alert or change event")
        repeats, first_ms = data.get("m", (1, 0))
        return cls(kind=data["k"], event=data["e"], accepted_ms=int(data["t"]),
                   id=str(data.get("i", "")), repeats=int(repeats), first_ms=int(first_ms))


# What ENQUEUE stores of one event: route, stored event, notice, story's first step, and
# who sends it (``relay.owners.owner_of``)
Item = tuple[Route, bytes | str, bytes | str, bytes | str, str]



@dataclass(frozen=True)
class Full:
    """What a request's events are told when storing it would overfill a queue: nothing
    of it was stored. ``slot`` is the key's place; ``total``: the cap on every queue."""

    slot: int
    total: bool


def is_gap(raw: str) -> bool:
    """Whether a lane's entry is a gap rather than an event (see above)."""
    return raw == "" or raw.startswith("~")


def unless_redis_down(check: Callable[[], T], what: str, redis_down: int) -> T | None:
    """``check()``, the start-up check of ``what``. Redis unreachable: a line at
    ``redis_down``'s level and None (0: raise): a process may start before Redis (it
    stores nothing meanwhile, and checks again at its next start)."""
    try:
        return check()
    except redis.RedisError as exc:
        if not redis_down:
            raise
        logging.getLogger(__name__).log(
            redis_down, "Redis does not answer (%s): %s checked when the relay's processes "
            "start", type(exc).__name__, what)
        return None


def connect(settings: Settings, block_s: float = 0.0, decode: bool = True) -> redis.Redis:
    """A client whose socket timeout outlasts any blocking command of ``block_s`` (and a
    WAIT for replicas); RQ's wants bytes (``decode=False``). A ``redis+sentinel://`` URL:
    a client of the primary the Sentinels name, found again after a failover
    (relay.sentinel)."""
    wait_s = settings.replica_timeout_ms / 1000 if settings.min_replicas else 0.0
    options: dict[str, Any] = dict(
        socket_timeout=settings.redis_timeout_s + block_s + wait_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        # One quick retry for a blip; then fail, so the ingress answers 503 at once.
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1),
        decode_responses=decode,
    )
    if is_sentinel(settings.redis_url):
        return master_client(settings.redis_url, settings.sentinel_password, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def now_ms() -> int:
    return int(time.time() * 1000)


class EventStore:
    """Writes accepted events; one caller at a time (the ingress's GroupCommit writer).

    The hot path talks to one connection of the client's pool directly: redis-py's
    command machinery (pool checkout, retry wrapper, event hooks) cost 115 us of CPU per
    call where the connection's own send and read cost 67 us (docs/BENCHMARKS.md). The
    command's constant part (EVALSHA, the script, its Redis names) is encoded once, in
    Redis's wire format (RESP): redis-py's packer spent 100 us a call encoding the names
    again and again. The names do not grow with the keys (issue 26): ENQUEUE names a
    key's queue, stats and incidents from its id.
    """

    def __init__(self, client: redis.Redis, names: Names, settings: Settings) -> None:
        self.client = client
        # every store is confirmed by this many replicas (one WAIT per store call, that
        # is per group-commit batch), or its requests are told 503 (NotReplicated)
        self.min_replicas = settings.min_replicas
        self.replica_timeout_ms = settings.replica_timeout_ms
        self.script = Scripts(client).enqueue
        self.connection: Any = None
        self.slots_written = False
        self.kids = [key_id(key) for key in settings.routing_keys]
        # the slots of this keys file (ENQUEUE looks up an incident's key there), named
        # by the file's keys, in order: another file's nodes have their own
        self.slots = {kid: n for n, kid in enumerate(self.kids, start=1)}
        self.slots_name = names.slots(hashlib.sha256(" ".join(self.kids).encode()).hexdigest()[:16])
        self.keys = [names.held, names.outbox, names.channel_stats, names.history,
                     names.history_ledger, names.shed, names.owners, names.where,
                     names.queued_bytes, names.known_keys, self.slots_name]
        # ENQUEUE's first arguments: how long incidents are remembered, then the caps
        self.settled = [int(settings.incident_ttl_s * 1000), settings.queue_max_events,
                        int(settings.queue_max_mb * 2**20), int(settings.queues_max_mb * 2**20)]
        # ARGV[6] to ARGV[9], after the requests' sizes
        self.caps = [_bulk(value) for value in (
            int(settings.outbox_max_mb * 2**20), settings.history_max_entries,
            settings.history_max_bytes, settings.incidents_max, names.prefix, names.wake)]
        self.place = [b""] + [_bulk(kid) for kid in self.kids]  # each slot's key id
        self.shed = Shed(client, names)
        self.prefix = b"".join(
            _bulk(part) for part in ("EVALSHA", self.script.sha, len(self.keys), *self.keys))

    def enqueue(self, batches: Sequence[Sequence[Item]]) -> list[int | Full | Owned]:
        """Store each batch (one request's ``Item`` per event: the notice b"" when no
        channel hears of it, the story b"" for none) whole or not at all, every batch in
        one round trip; return for each event the slot (1-based place in the keys file) of
        the key it was queued on, 0 for one held back (a route dropped it, a maintenance
        window suppressed it, or only channels hear of it), or ``Full`` when its batch would
        overfill
        a queue (nothing of it stored). No batch checks the connection (PING).

        Raises redis.RedisError when nothing may have been stored.
        """
        if not any(batches):
            self._command("PING")
            return []
        parts = [_bulk(value) for value in self.settled]
        parts.append(_bulk(" ".join(str(len(batch)) for batch in batches)))
        parts += self.caps
        for batch in batches:
            for route, raw, notice, story, sender in batch:
                parts += [_bulk(route.slot), _bulk(route.incident), _bulk(route.action),
                          _bulk(raw), _bulk(notice), _bulk(story), _bulk(sender),
                          self.place[abs(route.slot)] if route.slot else b"$0\r\n\r\n"]
        header = b"*%d\r\n" % (3 + len(self.keys) + len(parts))
        packed = b"".join([header, self.prefix, *parts])
        try:
            reply = self._store(packed)
        except redis.exceptions.ResponseError as exc:
            if not is_full(exc) or not self.shed.make_room():
                raise
            reply = self._store(packed)  # pages before history and channel notices
        if self.min_replicas:
            self._replicated()
        return [_slot(answer) for answer in reply]

    def _replicated(self) -> None:
        """WAIT for the replicas (every write this connection made is covered: a
        replica's stream is a prefix of the primary's); NotReplicated when too few
        confirm. Under Sentinel, too few may mean this primary was replaced: the
        connection is then dropped, so the next store asks the Sentinels."""
        confirmed = int(self._command("WAIT", self.min_replicas, self.replica_timeout_ms))
        if confirmed >= self.min_replicas:
            return
        if moved(self.client, self.connection):
            self.connection.disconnect()
        raise NotReplicated.short(confirmed, self.min_replicas)

    def _store(self, packed: bytes) -> Any:
        if not self.slots_written:
            self._write_slots()
        try:
            return self._command(packed)
        except redis.exceptions.NoScriptError:  # Redis restarted: its script cache is empty
            self._command("SCRIPT", "LOAD", self.script.script)
            self._write_slots()  # (and its data may be gone)
            return self._command(packed)

    def _write_slots(self) -> None:
        """The slots hash of this keys file (idempotent: one HSET). Redis full: tried
        again at the next store (until then, an incident found on a key no event of the
        call named reads as unknown)."""
        try:
            if self.slots:
                self.client.hset(self.slots_name, mapping=cast(Any, self.slots))
        except redis.exceptions.ResponseError as exc:
            if not is_full(exc):
                raise
            log.warning("Redis is full: this node's slots (%s) not written yet",
                        self.slots_name)
            return
        self.slots_written = True

    def _command(self, *command: Any) -> Any:
        """One command on the held connection, given as its words or already packed
        (redis-py drops the connection on any error, so the next command reconnects and
        never reads a late reply to this one)."""
        if self.connection is None:
            self.connection = self.client.connection_pool.get_connection()
        if len(command) == 1 and isinstance(command[0], bytes):
            self.connection.send_packed_command([command[0]])
        else:
            self.connection.send_command(*command)
        return self.connection.read_response()


def is_full(exc: redis.exceptions.ResponseError) -> bool:
    """Whether Redis refused a command because it is at ``maxmemory`` (Redis 6 reports a
    script's OOM inside an ERR, Redis 7 as OOM: redis-py's OutOfMemoryError)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or \
        "OOM command not allowed" in str(exc)


def _slot(answer: int | str) -> int | Full | Owned:
    """ENQUEUE's answer for one event: its slot, or 'full:<slot>' / 'total:<slot>', or
    'owner:<place in its request>'."""
    if isinstance(answer, int):
        return answer
    cap, slot, *owner = str(answer).split(":", 2)
    if cap == "owner":
        return Owned(int(slot), owner[0])
    return Full(int(slot), total=cap == "total")


def _bulk(value: bytes | str | int) -> bytes:
    """One RESP bulk string."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)
