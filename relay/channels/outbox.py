"""The dispatcher: turns the outbox's notices into one RQ job per channel.

One dispatcher works at a time (a lease, as the PagerDuty lanes hold theirs); any
channel worker may hold it. It moves entries from the outbox to a taken list, makes
their jobs, then forgets them (``OUTBOX_DONE``). A crash between leaves them taken: the
next holder makes their jobs again, and a job's id (notice id + channel) makes RQ
refuse the second copy. An entry that cannot be read is logged and dropped.

RQ's queues are bounded too (relay.channels.rqjobs): before each batch the dispatcher
deletes the oldest failed jobs past their bound (``trim``) and counts the jobs waiting in
each channel's queue and retry schedule (``rq_waiting``). A channel with
``CHANNEL_BACKLOG_MAX`` of them (less with many channels: all the channels' bounds fit
``RQ_BACKLOG_MAX``) is behind: its new notices are gathered into a digest
(relay.channels.decide), so a paced or slow channel never holds up the outbox, and so
never the other channels. At ``RQ_BACKLOG_MAX`` or more in all (a last resort) it takes
nothing, counts the round (``dispatch_held`` in ``Names.channel_stats``, with the count
in ``dispatch_backlog``) and waits, leaving the notices in the outbox, whose byte cap
(``RELAY_OUTBOX_MAX_MB``) skips and counts what does not fit. A channel that is down for
long thus costs at most its bound in RQ and a gathering, never memory without end.

What becomes of each notice to each channel is ``relay.channels.decide``'s: a job at once,
or held while the channel is muted, gathered for a digest, or dropped. Each step first
takes the gatherings that are due (at most ``FLUSH_MAX``, within the backlog's bound) and
makes their digests' jobs: the loop waits at most a second for the outbox, so a digest is
at most about a second late.

An acknowledge or resolve names no channels: it goes to those its trigger went to,
remembered per incident (``Names.heard``) with the trigger's severity and summary (cut to
``HEARD_SUMMARY_BYTES``). That memory is bounded whatever senders do: each remembered
incident is also in an order (a sorted set by time, ``Names.heard_order``), and
past ``heard_max`` incidents the oldest are forgotten first, counted (``heard_forgotten``
in ``Names.channel_stats``): a later acknowledge or resolve of one reaches no channel.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from relay.channels.decide import BACKLOG, Decider, Mute, Plan
from relay.channels.digest import Digest
from relay.channels.gather import SEP
from relay.channels.notice import Entry, Notice, fit, payload_of
from relay.channels.rqjobs import CHANNEL_BACKLOG_MAX, RQ_BACKLOG_MAX
from relay.names import Names
from relay.router import incident_id
from relay.routes import intervals
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile
from relay.scripts import Scripts
from relay.settings import Settings

log = logging.getLogger(__name__)
BATCH = 100
FLUSH_MAX = 20  # due gatherings taken (digests made) at most per step
# Most incidents the channels remember at once (and at most RELAY_INCIDENTS_MAX): each
# costs at most ~1.2 KB (a key, its TTL, the order's member, HEARD_SUMMARY_BYTES), so at
# most ~12 MB. A constant: the settings module belongs to the shared core.
HEARD_MAX = 10_000
HEARD_SUMMARY_BYTES = 512


class Dispatcher:
    def __init__(self, client: redis.Redis, names: Names, settings: Settings,
                 channels: Mapping[str, Channel],
                 put: Callable[[Channel, Notice], bool], lease_ms: int = 10_000,
                 backlog: Callable[[], int | Mapping[str, int]] = lambda: 0,
                 backlog_max: int = RQ_BACKLOG_MAX, channel_max: int = CHANNEL_BACKLOG_MAX,
                 trim: Callable[[], int] = lambda: 0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, heard_max: int = HEARD_MAX,
                 put_digest: Callable[[Channel, Digest], bool] = lambda c, d: True,
                 routes: RoutesFile | None = None,
                 muted_until: Mute = intervals.muted_until) -> None:
        self.client = client
        self.names = names
        self.settings = settings
        self.channels = channels
        self.put = put
        self.scripts = Scripts(client)
        self.lease_ms = lease_ms
        self.backlog = backlog
        self.backlog_max = backlog_max
        # each channel's bound: all of them fit the global one
        self.channel_max = max(1, min(channel_max, backlog_max // max(1, len(channels))))
        self.trim = trim
        self.sleep = sleep
        self.clock = clock
        self.heard_max = max(1, min(heard_max, settings.incidents_max))
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.decider = Decider(client, names, channels, Plan.of(routes), self._put, put_digest,
                               muted_until, clock)

    def _put(self, channel: Channel, notice: Notice) -> bool:
        return self.put(channel, notice)

    def hold(self) -> bool:
        """Take or keep the dispatcher's lease."""
        return bool(self.scripts.lease_acquire(keys=[self.names.dispatcher],
                                               args=[self.id, self.lease_ms]))

    def recover(self) -> int:
        """Make the jobs of entries a dispatcher took and did not finish, and of the
        digests it took from their gatherings (``relay.channels.decide``)."""
        taken = [str(raw) for raw in self.client.lrange(self.names.outbox_taken, 0, -1)]
        self.measure()
        self.decider.recovering = True
        try:
            self.dispatch(taken)
        finally:
            self.decider.recovering = False
        self.decider.make_digests()
        return len(taken)

    def step(self, block_s: int) -> int:
        """Take up to BATCH entries (waiting up to ``block_s`` for the first) and make
        their jobs; return how many were taken. While RQ holds ``backlog_max`` jobs or
        more, take nothing: count the round and wait ``block_s``."""
        n = self.names
        self.trim()  # failed jobs past their bound (relay.channels.rqjobs.trim_failed)
        waiting = self.measure()
        room = self.backlog_max - waiting
        if room <= 0:
            self.client.hincrby(n.channel_stats, "dispatch_held", 1)
            self.sleep(block_s)
            return 0
        room -= self.decider.flush(min(FLUSH_MAX, room))  # due digests (at most ~1 s late)
        first = self.client.blmove(n.outbox, n.outbox_taken, block_s, "LEFT", "RIGHT")
        if first is None:
            return 0
        # each entry makes at most one job per channel: stay within the bound
        batch = max(1, min(BATCH, max(1, room) // max(1, len(self.channels))))
        with self.client.pipeline(transaction=False) as pipe:
            for _ in range(batch - 1):
                pipe.lmove(n.outbox, n.outbox_taken, "LEFT", "RIGHT")
            more = [str(raw) for raw in pipe.execute() if raw is not None]
        self.dispatch([str(first), *more])
        return 1 + len(more)

    def measure(self) -> int:
        """Count the jobs waiting in RQ (stored as ``dispatch_backlog``), and tell the
        decisions each channel's room and which channels are behind (an open backlog
        gathering) when ``backlog`` counts them per channel; return the count, all
        channels."""
        found = self.backlog()
        per = dict(found) if isinstance(found, Mapping) else {}
        waiting = sum(per.values()) if isinstance(found, Mapping) else int(found)
        names = [name for name in self.channels if name in per]
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.names.channel_stats, "dispatch_backlog", waiting)
            for name in names:
                pipe.zscore(self.names.gatherings_due, f"{name}{SEP}{BACKLOG}")
            opened = pipe.execute()[1:]
        self.decider.room = {name: self.channel_max - per[name] for name in names}
        self.decider.behind = {name for name, due in zip(names, opened, strict=True)
                               if due is not None}
        return waiting

    def dispatch(self, entries: Sequence[str]) -> None:
        for raw in entries:
            try:
                self.send(Entry.parse(raw))
            except redis.RedisError:
                raise  # left taken: made again by the next try
            except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the rest
                log.error("outbox entry dropped, it could not be made a job: %s: %s",
                          type(exc).__name__, exc)
        if entries:
            n = self.names
            self.scripts.outbox_done(keys=[n.outbox_taken, n.outbox, n.channel_stats],
                                     args=list(entries))
            self.decider.gatherings.unmark()  # after: a retry of these parks none twice

    def send(self, entry: Entry) -> None:
        """Make one entry's jobs, and remember (or forget) its incident's channels."""
        event = entry.record.event
        incident = incident_id(str(event["dedup_key"])) if entry.record.kind == "alert" else ""
        channels: list[str] | None = entry.header.get("c")
        payload = payload_of(event)
        severity, summary = str(payload.get("severity", "info")), str(payload.get("summary", ""))
        heard = self.names.heard(incident)
        if channels is None:  # a follow-up: where its trigger went
            known = self.client.get(heard) if incident else None
            if known is None:
                return
            memory: dict[str, Any] = json.loads(known)
            channels, severity, summary = memory["c"], memory["v"], memory["m"]
        elif incident and entry.action == "trigger" and channels:
            known = self.client.get(heard)
            before = json.loads(known)["c"] if known else []
            memory = {"c": list(dict.fromkeys([*before, *channels])), "v": severity,
                      "m": fit(summary, HEARD_SUMMARY_BYTES)}
            self.remember(incident, json.dumps(memory))
        key = self.settings.key_names[entry.slot - 1] if entry.slot > 0 else ""
        notice = entry.notice(key, severity, summary)
        for name in channels:
            channel = self.channels.get(name)
            if channel is None:
                log.warning("no channel named %s in the routes file now: its notice of %s "
                            "dedup_key=%s is not sent", name, notice.state, event.get("dedup_key"))
                continue
            self.decider.decide(channel, notice)
        if entry.header.get("c") is None and entry.action == "resolve":
            with self.client.pipeline() as pipe:  # after its jobs: a retry finds it
                pipe.delete(heard)
                pipe.zrem(self.names.heard_order, incident)
                pipe.execute()

    def remember(self, incident: str, memory: str) -> None:
        """Keep ``incident``'s channels for as long as the incident; past ``heard_max``
        remembered incidents, forget the oldest first, counted."""
        order, ttl_s = self.names.heard_order, int(self.settings.incident_ttl_s)
        now_ms = int(self.clock() * 1000)
        with self.client.pipeline() as pipe:
            pipe.set(self.names.heard(incident), memory, ex=ttl_s)
            pipe.zadd(order, {incident: now_ms})
            pipe.zremrangebyscore(order, "-inf", now_ms - ttl_s * 1000)  # expired by now
            pipe.expire(order, ttl_s)
            pipe.zcard(order)
            remembered = int(pipe.execute()[-1])
        if remembered <= self.heard_max:
            return
        popped: list[tuple[str, float]] = self.client.zpopmin(  # type: ignore[assignment]
            order, remembered - self.heard_max)
        oldest = [str(member) for member, _ in popped]
        with self.client.pipeline() as pipe:
            pipe.delete(*(self.names.heard(old) for old in oldest))
            pipe.hincrby(self.names.channel_stats, "heard_forgotten", len(oldest))
            pipe.execute()
