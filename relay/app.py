"""The ingress: a Flask app in front of ``relay.ingest``: PagerDuty's endpoints, the
adapters' (``relay.adapters``), heartbeat pings (``relay.pings``), health, metrics, its
OpenAPI contract, and every error as a JSON answer (never a 500 for anything a client
sends). Paths are logged with their long segments masked (``masked_path``): a ping token
is one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from relay import formats
from relay.adapters import ADAPTERS
from relay.body import parse_body
from relay.commit import GroupCommit
from relay.errors import (
    BodyTooLarge,
    InvalidEvent,
    OperatorRequired,
    Refused,
    RequestError,
    StoreDown,
    Unauthorized,
    Unavailable,
)
from relay.heartbeats.report import Report
from relay.heartbeats.store import Heartbeats
from relay.history.pg.stories import Finder
from relay.http import client_address
from relay.ingest import Admitted, Credentials, Ingest
from relay.logs import masked_path, printable
from relay.metrics import Metrics
from relay.names import Names
from relay.pingchecks import Following
from relay.pings import Checks, Pings, PingStore, register
from relay.routes.policy import Policy
from relay.routes.sources import ROUTING_KEY_SENDER
from relay.settings import Settings
from relay.store import EventStore, connect
from relay.tally import Tally
from relay.ui import api, pages
from relay.ui.access import Access
from relay.ui.sessions import Sessions

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], int, dict[str, str]]
OPENAPI = resources.files("relay") / "openapi.yaml"  # the ingress's contract, served as is


def create_app(settings: Settings | None = None, client: redis.Redis | None = None,
               clock: Callable[[], float] = time.time, checks: Checks | None = None,
               pings: PingStore | None = None) -> Flask:
    """The ingress's app; ``clock`` (seconds) times the dashboard's sessions; ``checks``
    and ``pings``: the heartbeat checks and their store."""
    settings = settings or Settings.from_env()
    client = client if client is not None else connect(settings)
    names = Names(settings.prefix)
    try:  # promise 9: an ingress that cannot read the stored formats answers nothing
        formats.ensure(client, names)
    except redis.RedisError as exc:  # down: checked again at the next start
        log.warning("Redis does not answer (%s): the stored formats' version is checked "
                    "when the relay's processes start", type(exc).__name__)
    store = GroupCommit(EventStore(client, names, settings).enqueue,
                        verdict_s=settings.redis_timeout_s * 3)
    policy = Policy(settings)
    tally = Tally(client, names.decisions)  # started by `pd-relay ingress`
    heartbeats = Heartbeats(client, names)
    report = Report(client, heartbeats, lambda: policy.routes.heartbeats)
    metrics = Metrics(client, names, settings, report)
    ingest = Ingest(settings, store, policy, tally, metrics)
    following = Following(policy, heartbeats)
    try:  # then every few seconds (``Following.follow``: ``pd-relay ingress``)
        following.refresh()
    except redis.RedisError as exc:
        log.warning("Redis does not answer (%s): the run-time heartbeat checks are read "
                    "when it does", type(exc).__name__)
    pinger = Pings(policy, checks or following, pings or heartbeats)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def body(sender: Credentials) -> tuple[list[Any], bool, Admitted]:
        """The request's events, once its credentials may send them (a 401 costs no
        parse), and what they are judged by."""
        raw = request.get_data(cache=False)
        admitted = ingest.admit(sender, raw)
        return (*parse_body(request.mimetype, request.content_type, raw), admitted)

    def credentials() -> Credentials:
        headers = request.headers
        client = client_address(request.remote_addr, headers.get("X-Forwarded-For", ""),
                                settings.trusted_proxies)
        return Credentials(headers.get("X-API-Key"), headers.get("Authorization"),
                           headers.get("X-Routing-Key"), printable(client, 64),
                           printable(headers.get("X-Request-ID", "-"), 64))

    @app.post("/")
    @app.post("/v2/enqueue")
    def enqueue_alert() -> tuple[dict[str, Any], int]:
        sender = credentials()
        return ingest.accept("alert", *body(sender), sender), 202

    @app.post("/v2/change/enqueue")
    def enqueue_change() -> tuple[dict[str, Any], int]:
        sender = credentials()
        return ingest.accept("change", *body(sender), sender), 202

    @app.post("/adapters/<name>")
    @app.post("/platform-event", defaults={"name": "platform-event"})
    def adapt(name: str) -> tuple[dict[str, Any], int]:
        """Another tool's webhook, as events: validated, authorised and routed like any."""
        if name not in ADAPTERS or (name == "platform-event") != (request.path ==
                                                                 "/platform-event"):
            raise NotFound()
        sender = credentials()
        events, single, admitted = body(sender)
        if not single:
            raise InvalidEvent(["body: want one object, not a list"])
        who = admitted.sender.name if admitted.sender else ROUTING_KEY_SENDER
        beats, rest, watchdogs = pinger.watched(name, events[0], who)
        if rest is None:  # Watchdog alerts only: pings, no event
            answer: dict[str, Any] = {"status": "success", "message": (
                f"{watchdogs} Watchdog alert(s), {len(beats)} ping(s), no event")}
        else:
            converted = ADAPTERS[name](rest, settings.severities)
            answer = ingest.accept("alert", converted, False, admitted, sender, name)
        if watchdogs:  # after the events are stored: a refusal leaves no ping behind
            answer["pings"] = pinger.beat(beats, f"{name}:{who}")
        return answer, 202

    register(app, pinger, credentials)

    access = Access(settings, policy, Sessions(client, settings, clock))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive: open to all, it says nothing else."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, str], int]:
        """Ready while this node can store: a PING through the writer's own path (for an
        operator, the stack's own checks and RELAY_ADMIN_ALLOW: ``Access.monitor``)."""
        access.monitor(request)
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
        access.monitor(request)
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.errorhandler(RequestError)
    def refused(exc: RequestError) -> Reply:
        metrics.rejected.labels(type(exc).__name__).inc()
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else {}
        if isinstance(exc, Unauthorized | OperatorRequired):
            headers = {"WWW-Authenticate": 'Bearer realm="pd-relay"'}
        if isinstance(exc, Refused):
            tally.add("source", exc.sender, "refused")
            log.info("refused %s %s from %s: %s", request.method, masked_path(request.path),
                     exc.sender, exc)
        return exc.body(), exc.status_code, headers

    @app.errorhandler(redis.RedisError)
    def store_down(exc: redis.RedisError) -> Reply:
        """Promise 1: Redis failing under a request no narrower guard covers (the history
        API, /metrics, ...) is a 503 with Retry-After, never a 500."""
        log.warning("Redis does not answer %s %s: %s", request.method,
                    masked_path(request.path), type(exc).__name__)
        return refused(StoreDown.of(exc))

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
        log.exception("unexpected error handling %s %s", request.method,
                      masked_path(request.path))
        body = {"status": "error", "message": "Internal error", "errors": [type(exc).__name__]}
        return body, 500, {}

    finder = Finder(settings, client)  # the history: the record in PostgreSQL, or the stream
    app.register_blueprint(api.blueprint(settings, finder, access))
    app.register_blueprint(pages.blueprint(settings, client, policy, access, report, finder))

    app.extensions["pd_relay_policy"] = policy  # ``reload`` on SIGHUP (relay/commands/ingress.py)
    app.extensions["pd_relay_tally"] = tally
    app.extensions["pd_relay_checks"] = following  # followed by `pd-relay ingress`
    app.extensions["pd_relay_store"] = store  # the group commit (tests watch its queue)
    return app
