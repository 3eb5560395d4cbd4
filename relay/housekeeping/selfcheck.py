"""The relay's own alarms: every 30 s the conditions that need a person are read, and each
becomes one incident on the routes file's ``self_alert`` keys and channels, resolved when
the condition clears.

    key-blocked:NAME     critical  PagerDuty refuses the key's requests (401/403/404...)
    no-worker:NAME       critical  no worker's heartbeat for a configured key
    stalled:NAME         error     the key's oldest queued event is older than oldest_queued_s
    dead-letters         warning   dead letters wait to be replayed or purged
    channel:NAME         warning   a channel's breaker is open ("breaker open since"), or
                                   it has failed messages, or fails now
    history-lag          warning   the record in PostgreSQL is behind the stream by more
                                   than history_lag_s (exporter down, PostgreSQL unreachable)
    history-lost         warning   entries were lost from the record (the stream's caps
                                   trimmed them before export) within LOST_QUIET_S

A condition is an alarm once it has held for ``for_s`` (as Prometheus' ``for``: a worker
that restarts, or the first check after a start, pages no one); until then it is pending
(``Names.alarms_pending``). One open alarm per condition: the open ones are kept in
Redis (``Names.alarms``) and taken with HSETNX/HDEL, so two checks at once raise or
resolve each once. An alarm never
feeds itself: it is not sent on the key or to the channel it is about, and dead letters
of alarms are not counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from relay.auth import RESERVED
from relay.channels.breakerstate import breaker_line, state_of
from relay.history.pg import report as record
from relay.names import Names
from relay.owners import Owned
from relay.ownevents import own_event, slot_of, store_own
from relay.routes.channels import Breaker, hearing
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.status import read_status
from relay.store import EventStore, Full

log = logging.getLogger(__name__)
PREFIX = RESERVED  # every alarm's dedup_key starts with it: no sender may use it
FAILING_S = 300  # a channel's error this recent, with messages waiting to retry: failing
LOST_QUIET_S = 900  # entries lost from the record this recently: the alarm holds


@dataclass(frozen=True)
class Condition:
    id: str
    summary: str
    severity: str
    key: str = ""  # the key it is about: the alarm goes on another
    channel: str = ""  # the channel it is about: the alarm goes to the others

    @property
    def dedup_key(self) -> str:
        return PREFIX + self.id.replace(":", "-")


def conditions(client: redis.Redis, names: Names, settings: Settings, routes: RoutesFile,
               queues: Sequence[Queue] = (), now: float | None = None) -> list[Condition]:
    """What needs a person now."""
    now = time.time() if now is None else now
    oldest = routes.self_alert.oldest_queued_s if routes.self_alert else 600.0
    found = []
    for row in read_status(client, names, settings):
        name = row["name"]
        if row["state"] == "removed":
            continue
        if row["blocked"]:
            found.append(Condition(f"key-blocked:{name}", f"pd-relay: key {name} is blocked: "
                                   f"{row['blocked']}"[:1000], "critical", key=name))
        if not row["worker_alive"]:
            found.append(Condition(f"no-worker:{name}", f"pd-relay: no worker delivers key "
                                   f"{name} ({row['queued']} queued)", "critical", key=name))
        if row["oldest_age_seconds"] > oldest:
            found.append(Condition(f"stalled:{name}", f"pd-relay: the oldest queued event of "
                                   f"key {name} waits for {row['oldest_age_seconds']:.0f} s",
                                   "error", key=name))
    letters = [raw for raw in client.hvals(names.dead) if PREFIX not in str(raw)]
    if letters:
        found.append(Condition("dead-letters", f"pd-relay: {len(letters)} dead letter(s) "
                               "PagerDuty refused wait to be replayed or purged", "warning"))
    stats: dict[str, str] = client.hgetall(names.channel_stats)  # type: ignore[assignment]
    settings_of = {c.name: c.breaker for c in routes.channels}
    for queue in queues:
        name = queue.name.removeprefix(names.channel_queue(""))
        failed = FailedJobRegistry(queue=queue).count
        retrying = ScheduledJobRegistry(queue=queue).count  # type: ignore[no-untyped-call]
        recent = now - int(stats.get(f"{name}:error_at", 0)) < FAILING_S
        breaker = state_of(client.hgetall(names.breaker(name)),
                           int(now * 1000), settings_of.get(name, Breaker()))
        if breaker.open or failed or (retrying and recent):
            error = stats.get(f"{name}:error", "")
            said = f"{breaker_line(breaker.to_json())}; " if breaker.open else ""
            found.append(Condition(f"channel:{name}", f"pd-relay: channel {name}: {said}"
                                   f"{failed} failed, {retrying} retrying; last error: "
                                   f"{error}"[:1000], "warning", channel=name))
    return found + history(client, names, settings, routes, now)


def history(client: redis.Redis, names: Names, settings: Settings, routes: RoutesFile,
            now: float) -> list[Condition]:
    """The record in PostgreSQL: behind the stream, or losing entries (none without it)."""
    now_ms = int(now * 1000)
    figures = record.read(client, names, settings, now_ms)
    if figures is None:
        return []
    found = []
    limit = routes.self_alert.history_lag_s if routes.self_alert else 300.0
    if figures.lag_s is not None and figures.lag_s > limit:
        found.append(Condition("history-lag", f"pd-relay: the history's record in PostgreSQL "
                               f"is {figures.lag_s:.0f} s behind (is the exporter running, "
                               f"does {figures.dsn} answer?)"[:1000], "warning"))
    grew_ms = record.note_lost(client, names, figures, now_ms)
    if figures.lost and now_ms - grew_ms < LOST_QUIET_S * 1000:
        found.append(Condition("history-lost", f"pd-relay: {figures.lost} history entries "
                               "lost from the record in PostgreSQL: the stream's caps trimmed "
                               "them before the exporter wrote them (export lag "
                               f"{figures.lag_s or 0:.0f} s)", "warning"))
    return found


class Alarms:
    def __init__(self, client: redis.Redis, names: Names, settings: Settings,
                 routes: RoutesFile) -> None:
        self.client = client
        self.names = names
        self.settings = settings
        self.routes = routes
        self.store = EventStore(client, names, settings)
        self.least = {c.name: c.min_severity for c in routes.channels}

    def check(self, found: Sequence[Condition], now: float | None = None
              ) -> tuple[list[str], list[str]]:
        """Raise what held long enough, resolve what cleared; return both lists of ids."""
        now = time.time() if now is None else now
        current = {c.id: c for c in found}
        held: dict[str, str] = self.client.hgetall(self.names.alarms)  # type: ignore[assignment]
        pending: dict[str, str] = self.client.hgetall(  # type: ignore[assignment]
            self.names.alarms_pending)
        hold_s = self.routes.self_alert.for_s if self.routes.self_alert else 60.0
        raised, resolved = [], []
        for condition in current.values():
            if condition.id in held:
                continue
            since = float(pending.get(condition.id, now))
            if condition.id not in pending and hold_s > 0:
                self.client.hsetnx(self.names.alarms_pending, condition.id, now)
            if now - since < hold_s:
                continue
            self.client.hdel(self.names.alarms_pending, condition.id)
            if self.client.hsetnx(self.names.alarms, condition.id,
                                  json.dumps(self._route_of(condition))):
                self._send(condition, "trigger")
                raised.append(condition.id)
        gone = [cid for cid in pending if cid not in current]
        if gone:
            self.client.hdel(self.names.alarms_pending, *gone)
        for cid, where in held.items():
            if cid not in current and self.client.hdel(self.names.alarms, cid):
                cleared = Condition(cid, "", "info", key=json.loads(where).get("key", ""))
                self._send(cleared, "resolve")
                resolved.append(cid)
        return raised, resolved

    def _route_of(self, condition: Condition) -> dict[str, Any]:
        return {"key": condition.key, "since": int(time.time()), "summary": condition.summary}

    def _send(self, condition: Condition, action: str) -> None:
        alarms = self.routes.self_alert
        if alarms is None:
            log.warning("self-alert %s %s: no self_alert section in the routes file to send "
                        "it to", "raised" if action == "trigger" else "resolved", condition.id)
            return
        dedup_key = condition.dedup_key
        event = own_event(action, dedup_key, condition.summary, condition.severity,
                          "self-alert", {"condition": condition.id})
        pool = [k for k in alarms.keys if k != condition.key]
        slot = -slot_of(self.settings.key_names, pool, dedup_key)
        heard = [name for name in hearing(alarms.channels, condition.severity, self.least)
                 if name != condition.channel]
        answer = store_own(self.store, self.settings, event, slot, "self_alert",
                           None if action == "resolve" else heard, bool(alarms.channels))
        if isinstance(answer, Full | Owned):
            log.error("self-alert %s not sent: %s", condition.id,
                      "the queue of its key is full" if isinstance(answer, Full) else
                      f"its incident belongs to {answer.owner}")
            return
        log.warning("self-alert %s %s: %s", condition.id,
                    "raised" if action == "trigger" else "resolved", condition.summary)
