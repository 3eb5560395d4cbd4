"""The ingress: a Flask app that validates PD-CEF events and queues them in Redis.

A 202 is answered only after Redis has stored the event; any Redis failure is a 503
with Retry-After, so a sender never takes a 202 for an event that was not stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from importlib import resources
from typing import Any

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from relay import validation
from relay.adapters import ADAPTERS
from relay.body import encode, parse_body
from relay.commit import GroupCommit
from relay.errors import (
    BodyTooLarge,
    InvalidEvent,
    Refused,
    RequestError,
    Unauthorized,
    Unavailable,
)
from relay.metrics import Metrics
from relay.names import Names
from relay.router import Route
from relay.routes.policy import Policy
from relay.settings import Settings
from relay.store import EventStore, Record, connect, now_ms
from relay.tally import Tally

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], int, dict[str, str]]
OPENAPI = resources.files("relay") / "openapi.yaml"  # the ingress's contract, served as is
CHECKS = {"alert": validation.alert_problems, "change": validation.change_problems}


def create_app(settings: Settings | None = None, client: redis.Redis | None = None) -> Flask:
    settings = settings or Settings.from_env()
    client = client if client is not None else connect(settings)
    names = Names(settings.prefix)
    store = GroupCommit(EventStore(client, names, settings).enqueue,
                        verdict_s=settings.redis_timeout_s * 3)
    policy = Policy(settings)
    tally = Tally(client, names.decisions)  # started by `pd-relay ingress`
    labels = [settings.name_of(key) for key in settings.routing_keys]
    metrics = Metrics(client, names, settings)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def body() -> tuple[list[Any], bool]:
        return parse_body(request.mimetype, request.content_type, request.get_data(cache=False))

    def ingest(kind: str, events: list[Any], single: bool,
               adapter: str = "events-v2") -> tuple[dict[str, Any], int]:
        router, gate = policy.current
        # 401 for an unknown API key
        sender = gate.sender(request.headers.get("X-API-Key"),
                             request.headers.get("Authorization"))
        header_key = request.headers.get("X-Routing-Key")
        check = CHECKS[kind]
        problems: list[str] = []
        batch: list[tuple[Route, bytes]] = []
        records: list[Record] = []
        senders: list[str] = []
        accepted = now_ms()
        now = accepted / 1000
        for index, event in enumerate(events):
            at = "" if single else f"[{index}]"
            if header_key and isinstance(event, dict) and "routing_key" not in event:
                event["routing_key"] = header_key
            named = event.get("routing_key") if isinstance(event, dict) else None
            configured = isinstance(named, str) and named in router.slots
            if sender is None and not configured:  # before any detail of the event is told
                gate.admit(sender, {}, configured, at, {})
            found = check(event, at)
            if not found:
                who = gate.admit(sender, event, configured, at, {"adapter": adapter})
                senders.append(who.name)
                context = {"sender": who.name, "adapter": adapter}
                route = router.route(kind, event, at + "." if at else "", context, now)
                if isinstance(route, str):
                    found = [route]
                else:
                    record = Record(kind, event, accepted)
                    raw, found = encode(record, at, settings.max_body_bytes)
                    batch.append((route, raw))
                    records.append(record)
            problems += found
        if problems:
            raise InvalidEvent(problems)
        try:
            slots = store.enqueue(batch, timeout_s=settings.redis_timeout_s * 3)
        except Exception as exc:  # any failure to store is this request's 503, never a 500
            log.error("could not store %d event(s): %s: %s", len(batch), type(exc).__name__, exc)
            raise Unavailable([f"event store: {type(exc).__name__}"]) from exc
        metrics.accepted.labels(kind).inc(len(events))
        dedup_keys = [event.get("dedup_key") for event in events]
        held = 0
        counts: Counter[tuple[str, str, str]] = Counter()
        for record, slot, (route, _), by in zip(records, slots, batch, senders, strict=True):
            counts["source", by, "accepted"] += 1
            if slot:
                counts["route", route.rule, "accepted"] += 1
                log.info("accepted %s dedup_key=%s key=%s route=%s", record.action,
                         record.event.get("dedup_key"), labels[slot - 1], route.rule)
            else:
                held += 1
                counts["route", route.rule, _outcome(route.rule)] += 1
                log.info("held back %s dedup_key=%s: %s", record.action,
                         record.event.get("dedup_key"), _why(route.rule))
        tally.add_all(counts)
        if single:
            message = _why(batch[0][0].rule).capitalize() if held else "Event queued"
            return {"status": "success", "message": message, "dedup_key": dedup_keys[0]}, 202
        return {
            "status": "success",
            "message": f"{len(events)} events accepted, {len(events) - held} queued",
            "dedup_keys": dedup_keys,
        }, 202

    @app.post("/")
    @app.post("/v2/enqueue")
    def enqueue_alert() -> tuple[dict[str, Any], int]:
        return ingest("alert", *body())

    @app.post("/v2/change/enqueue")
    def enqueue_change() -> tuple[dict[str, Any], int]:
        return ingest("change", *body())

    @app.post("/adapters/<name>")
    @app.post("/platform-event", defaults={"name": "platform-event"})
    def adapt(name: str) -> tuple[dict[str, Any], int]:
        """Another tool's webhook, as events: validated, authorised and routed like any."""
        if name not in ADAPTERS or (name == "platform-event") != (request.path ==
                                                                 "/platform-event"):
            raise NotFound()
        events, single = body()
        if not single:
            raise InvalidEvent(["body: want one object, not a list"])
        return ingest("alert", ADAPTERS[name](events[0], settings.severities), False, name)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, str], int]:
        """Ready while this node can store: a PING through the writer's own path."""
        try:
            store.enqueue([], timeout_s=settings.redis_timeout_s)
        except Exception as exc:  # any failure means not ready
            return {"status": "unavailable", "message": f"event store: {type(exc).__name__}"}, 503
        return {"status": "ok"}, 200

    @app.get("/openapi.yaml")
    def openapi() -> Response:
        return Response(OPENAPI.read_bytes(), content_type="application/yaml")

    @app.get("/metrics")
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.errorhandler(RequestError)
    def refused(exc: RequestError) -> Reply:
        metrics.rejected.labels(type(exc).__name__).inc()
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else {}
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": 'Bearer realm="pd-relay"'}
        if isinstance(exc, Refused):
            tally.add("source", exc.sender, "refused")
            log.info("refused %s %s from %s: %s", request.method, request.path, exc.sender, exc)
        return exc.body(), exc.status_code, headers

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Reply:
        limit = settings.max_body_bytes
        return refused(BodyTooLarge([f"body: larger than the limit of {limit} bytes"]))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Reply:
        body = {"status": "error", "message": exc.name, "errors": [exc.description or exc.name]}
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return body, exc.code or 500, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Reply:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        body = {"status": "error", "message": "Internal error", "errors": [type(exc).__name__]}
        return body, 500, {}

    app.extensions["pd_relay_policy"] = policy  # ``reload`` on SIGHUP (relay/cli.py)
    app.extensions["pd_relay_tally"] = tally
    return app


def _outcome(rule: str) -> str:
    """What holding an event back under ``rule`` counts as."""
    if rule.startswith("maintenance:"):
        return "suppressed"
    return "held" if rule in ("default", "routing-key") else "dropped"


def _why(rule: str) -> str:
    """Why an event was held back, for its answer and its log line."""
    if rule.startswith("maintenance:"):
        return f"suppressed by maintenance window {rule.split(':', 1)[1]}"
    if rule in ("default", "routing-key"):
        return "held with its trigger, which was dropped or suppressed"
    return f"dropped by route {rule}"
