"""Taking a request's events: who sends them (``auth``), whether they are valid, where
they go (``router``), then storing them all in one Redis command and answering.

A 202 is answered only after Redis has stored the events; any failure to store is a
503 with Retry-After for this request alone. Each decision is logged with its route and
counted per route and source (``tally``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from relay import history, validation
from relay.auth import FOLLOW_UPS, Gate, Sender
from relay.body import encode
from relay.channels.notice import header
from relay.commit import GroupCommit
from relay.errors import Forbidden, InvalidEvent, NotReplicated, QueueFull, Unavailable
from relay.logs import printable
from relay.metrics import Metrics
from relay.owners import Owned, owner_of
from relay.router import Route, Router, outcome, why
from relay.routes.policy import Policy
from relay.routes.sources import ANONYMOUS, ROUTING_KEY_SENDER
from relay.settings import Settings
from relay.store import Full, Item, Record, now_ms
from relay.tally import Tally

log = logging.getLogger(__name__)
CHECKS = {"alert": validation.alert_problems, "change": validation.change_problems}
# A routing key as a body names it, before the body is parsed (``Ingest.admit``)
ROUTING_KEY_MEMBER = re.compile(rb'"routing_key"\s*:\s*"([A-Za-z0-9]{32})"')


class Credentials(NamedTuple):
    """What a request's headers say about its sender."""

    api_key: str | None  # X-API-Key
    authorization: str | None  # Authorization: Bearer ...
    routing_key: str | None  # X-Routing-Key: for its events that name none
    client: str = ""  # the sender's address, as nginx saw it
    request_id: str = ""  # X-Request-ID (nginx makes one when the client sent none)


class Admitted(NamedTuple):
    """What a request is judged by, read once (``Ingest.admit``): the routes file in force
    (a reload while it is under way does not change them) and its sender, by API key
    (None: its events must carry routing keys)."""

    router: Router
    gate: Gate
    sender: Sender | None


class Ingest:
    def __init__(self, settings: Settings, store: GroupCommit, policy: Policy, tally: Tally,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy
        self.tally = tally
        self.metrics = metrics
        self.labels = [settings.name_of(key) for key in settings.routing_keys]
        self.node = f"{socket.gethostname()}:{os.getpid()}"  # in each event's story
        self.stories = settings.history_max_entries > 0
        self.payloads = bool(settings.history_dsn)  # the record in PostgreSQL keeps them

    def admit(self, credentials: Credentials, raw: bytes) -> Admitted:
        """Refuse (401) what may not send before its body is parsed, so a refusal costs
        less than an acceptance: an unknown API key; or no API key (anonymous senders not
        allowed) and none of the relay's routing keys in X-Routing-Key or, as written, as a
        ``"routing_key"`` member of the body (one scan of the body, whatever the number of
        keys). Each event's key is checked after the parse."""
        router, gate = self.policy.current
        sender = gate.sender(credentials.api_key, credentials.authorization)  # 401: unknown
        if sender is not None or credentials.routing_key in router.slots or any(
                found.group(1).decode() in router.slots
                for found in ROUTING_KEY_MEMBER.finditer(raw)):
            return Admitted(router, gate, sender)
        gate.admit(None, {}, False, "body", {})  # raises Unauthorized, saying why
        raise AssertionError("unreachable: Gate.admit refuses a request with no sender")

    def accept(self, kind: str, events: list[Any], single: bool, admitted: Admitted,
               credentials: Credentials, adapter: str = "events-v2") -> dict[str, Any]:
        """Store the events, or raise the RequestError that refuses them all."""
        batch, records, senders = self._prepare(kind, events, single, admitted, credentials,
                                                adapter)
        try:
            slots = self.store.enqueue(batch, timeout_s=self.settings.redis_timeout_s * 3)
        except NotReplicated as exc:  # stored on the primary only (maybe): a 503 that says so
            log.error("%d event(s) not confirmed by enough replicas: %s", len(batch),
                      "; ".join(exc.errors))
            raise
        except Exception as exc:  # any failure to store is this request's 503, never a 500
            log.error("could not store %d event(s): %s: %s", len(batch), type(exc).__name__, exc)
            raise Unavailable([f"event store: {type(exc).__name__}"]) from exc
        owned = next((slot for slot in slots if isinstance(slot, Owned)), None)
        if owned is not None:
            raise self._owned(owned, records, senders, single, credentials)
        full = next((slot for slot in slots if isinstance(slot, Full)), None)
        if full is not None:
            raise self._full(full, len(batch), credentials)
        self.metrics.accepted.labels(kind).inc(len(events))
        stored = [slot for slot in slots if isinstance(slot, int)]
        held = self._count(records, stored, [item[0] for item in batch], senders,
                           f"client={credentials.client} rid={credentials.request_id}")
        dedup_keys = [event.get("dedup_key") for event in events]
        if single:
            message = why(batch[0][0]).capitalize() if held else "Event queued"
            return {"status": "success", "message": message, "dedup_key": dedup_keys[0]}
        return {"status": "success",
                "message": f"{len(events)} events accepted, {len(events) - held} queued",
                "dedup_keys": dedup_keys}

    def _owned(self, owned: Owned, records: list[Record], senders: list[str], single: bool,
               credentials: Credentials) -> Forbidden:
        """Why a request that acts on another sender's incident is refused (logged, with
        the owner): the first such event's place and dedup_key; never who owns it."""
        sender, record = senders[owned.position - 1], records[owned.position - 1]
        dedup_key = str(record.event.get("dedup_key", ""))
        at = "event" if single else f"[{owned.position - 1}]"
        log.warning("refused %d event(s) client=%s rid=%s: %s acts on incident %s, which %s "
                    "opened", len(records), credentials.client, credentials.request_id,
                    sender, printable(dedup_key, 255), owned.owner)
        return Forbidden([f"{at}: incident {dedup_key!r} was opened by another sender; only "
                          "it may acknowledge, resolve or re-trigger it (or a source with "
                          "follow_up: any)"], sender)

    def _full(self, full: Full, count: int, credentials: Credentials) -> QueueFull:
        """Why a request that would overfill a queue is refused (logged)."""
        key, caps = self.labels[full.slot - 1], self.settings
        if full.total:
            why = (f"the relay's queues hold {caps.queues_max_mb:g} MB in all "
                   f"(RELAY_QUEUES_MAX_MB); key {key} would take more")
        else:
            why = (f"the queue of key {key} is full: at most {caps.queue_max_events} events "
                   f"(RELAY_QUEUE_MAX_EVENTS) and {caps.queue_max_mb:g} MB "
                   f"(RELAY_QUEUE_MAX_MB)")
        log.warning("refused %d event(s) client=%s rid=%s: %s", count, credentials.client,
                    credentials.request_id, why)
        return QueueFull([why + "; it drains as PagerDuty takes its events"])

    def _prepare(self, kind: str, events: list[Any], single: bool, admitted: Admitted,
                 credentials: Credentials, adapter: str) -> tuple[list[Item], list[Record],
                                                                   list[str]]:
        router, gate, sender = admitted
        by_key = ROUTING_KEY_SENDER  # who an event's routing key lets in
        contexts = {name: {"sender": name, "adapter": adapter}
                    for name in (by_key, sender.name if sender else by_key)}
        check, problems = CHECKS[kind], []
        batch: list[Item] = []
        records: list[Record] = []
        senders: list[str] = []
        accepted = now_ms()
        for index, event in enumerate(events):
            at = "" if single else f"[{index}]"
            if credentials.routing_key and isinstance(event, dict) and "routing_key" not in event:
                event["routing_key"] = credentials.routing_key
            named = event.get("routing_key") if isinstance(event, dict) else None
            configured = isinstance(named, str) and named in router.slots
            if sender is None and not configured:  # before any detail of the event is told
                gate.admit(sender, {}, configured, at, {})
            found = check(event, at)
            if not found:
                name = by_key if sender is None else sender.name
                gate.reserved(sender, event, at)
                if sender is not None and sender.matchers and \
                        event.get("event_action") not in FOLLOW_UPS:  # 403 unless all hold
                    gate.admit(sender, event, configured, at, contexts[name])
                route = router.route(kind, event, at + "." if at else "", contexts[name],
                                     accepted / 1000)
                if isinstance(route, str):
                    found = [route]
                else:
                    gate.may_take(sender, route, at)  # a source's own routes
                    record = Record(kind, event, accepted, history.event_id())
                    raw, found = encode(record, at, self.settings.max_body_bytes)
                    heard = sender.channels if sender is not None else ()
                    story = history.accepted(
                        i=record.id, d=event.get("dedup_key", ""), a=route.action, r=route.rule,
                        s=name, n=self.node, ad=adapter, c=credentials.client,
                        h=outcome(route) if not route.slot else "",
                        p=raw.decode() if self.payloads else "",
                    ) if self.stories else b""
                    source = sender.name if sender and sender.name != ANONYMOUS else None
                    owner = owner_of(source, named if configured else None,
                                     sender.follow_up_any if sender else False)
                    batch.append((route, raw, notice(router, route, event, heard, name,
                                                     record.id), story, owner))
                    records.append(record)
                    senders.append(name)
            problems += found
        if problems:
            raise InvalidEvent(problems)
        return batch, records, senders

    def _count(self, records: list[Record], slots: Sequence[int], routes: list[Route],
               senders: list[str], origin: str) -> int:
        """Log and count each decision; return how many events were held back."""
        counts: Counter[tuple[str, str, str]] = Counter()
        held = 0
        for record, slot, route, sender in zip(records, slots, routes, senders, strict=True):
            counts["source", sender, "accepted"] += 1
            if slot:
                counts["route", route.rule, "accepted"] += 1
                log.info("accepted %s dedup_key=%s key=%s route=%s %s", record.action,
                         record.event.get("dedup_key"), self.labels[slot - 1],
                         route.rule + (" (muted: night keys)" if route.night else ""), origin)
            else:
                held += 1
                counts["route", route.rule, outcome(route)] += 1
                if route.window:  # what the window held back, for its notices
                    counts["window", route.window, "suppressed"] += 1
                log.info("held back %s dedup_key=%s %s: %s", record.action,
                         record.event.get("dedup_key"), origin, why(route))
        self.tally.add_all(counts)
        return held


def notice(router: Router, route: Route, event: dict[str, Any], heard: Sequence[Any],
           sender: str, event_id: str) -> bytes:
    """What the channels are told of an event besides the event itself (ENQUEUE appends
    both to the outbox): an id, the channels that hear of it (null for an acknowledge or
    resolve: those its trigger went to), its route and sender. b"" when none hears."""
    channels: list[str] | None = list(route.channels)
    if heard:
        channels = list(dict.fromkeys([*route.channels, *router.hearing(heard, event)]))
    if route.action in ("acknowledge", "resolve"):
        if not router.least:
            return b""
        channels = None
    elif not channels:
        return b""
    return header(event_id, channels, route.rule, sender)
