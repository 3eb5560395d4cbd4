"""The PagerDuty stand-in: state, faults and the HTTP server.

It checks events as PagerDuty does (``simulator.rules``), answers with PagerDuty's bodies,
throttles each routing key to ``limit`` calls in a sliding ``window_s`` window (429
"throttle exceeded"), and can be told to fail, stall or drop connections. It keeps each
incident's state as PagerDuty does and counts what would page someone wrongly:
- ``misrouted``: an acknowledge or resolve on another key than its incident's trigger
  (PagerDuty drops it with a 202);
- ``orphans``: an acknowledge or resolve for an incident never triggered (it came first);
- ``late_triggers``: a trigger for an incident whose follow-up came before it (it opens
  an incident that nothing will resolve).

Control (JSON): ``POST /_sim/config`` changes FAULTS fields, ``POST /_sim/reset`` clears
everything, ``GET /_sim/events`` lists every request seen, ``GET /_sim/stats`` counts them.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from simulator import rules

log = logging.getLogger(__name__)

THROTTLED = {
    "status": "throttle exceeded",
    "message": "Requests for this service are arriving too quickly.  Please retry later.",
}
FAULTS: dict[str, Any] = {
    "limit": 120,  # calls per key per window
    "window_s": 60.0,
    "fail_rate": 0.0,  # share of requests answered fail_status
    "fail_status": 502,
    "throttle_rate": 0.0,  # share answered 429 under the limit (dynamic throttling)
    "reject_rate": 0.0,  # share answered 400 although valid
    "slow_rate": 0.0,  # share answered after slow_s seconds
    "slow_s": 0.0,
    "drop_rate": 0.0,  # share whose connection is closed with no answer
    "retry_after": None,  # Retry-After header sent with 429 and 5xx, if set
}


class Simulator:
    """PagerDuty's behaviour without the HTTP layer (thread-safe)."""

    def __init__(self, seed: int | None = None, **faults: Any) -> None:
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.reset(**faults)

    def reset(self, **faults: Any) -> None:
        with self.lock:
            self.faults = dict(FAULTS)
            self.faults.update(_checked(faults))
            self.windows: dict[str, deque[float]] = {}
            self.open: dict[str, str] = {}  # dedup_key -> key of its open incident
            self.resolved: dict[str, str] = {}  # dedup_key -> key it was resolved on
            self.early: set[str] = set()  # dedup_keys whose follow-up came before a trigger
            self.events: list[dict[str, Any]] = []
            self.counts: Counter[str] = Counter()

    def configure(self, faults: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.faults.update(_checked(faults))
            return dict(self.faults)

    def handle(self, path: str, body: bytes) -> tuple[str, int, dict[str, Any]]:
        """Return (fate, status, reply); fate is "answer", "slow" or "drop"."""
        now = time.monotonic()
        event, problems = _parse(path, body)
        key = str(event.get("routing_key", "")) if isinstance(event, dict) else ""
        with self.lock:
            f, roll = self.faults, self.random.random
            fate = "answer"
            if roll() < f["drop_rate"]:
                fate, status, reply = "drop", 0, {}
            elif problems:
                status, reply = 400, _invalid(problems)
            elif self._throttled(key, now) or roll() < f["throttle_rate"]:
                status, reply = 429, dict(THROTTLED)
            elif roll() < f["fail_rate"]:
                status, reply = f["fail_status"], {"status": "error", "message": "Server error"}
            elif roll() < f["reject_rate"]:
                status, reply = 400, _invalid(["simulated rejection"])
            else:
                status, reply = 202, self._accept(path, event)
                if roll() < f["slow_rate"]:
                    fate = "slow"
            self.counts[str(status) if fate != "drop" else "dropped"] += 1
            self.events.append(_entry(path, event, status if fate != "drop" else 0))
        return fate, status, reply

    def _throttled(self, key: str, now: float) -> bool:
        window = self.windows.setdefault(key, deque())
        while window and window[0] <= now - self.faults["window_s"]:
            window.popleft()
        if len(window) >= self.faults["limit"]:
            return True
        window.append(now)
        return False

    def _accept(self, path: str, event: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/change/enqueue"):
            return {"status": "success", "message": "Change event processed"}
        dedup_key = event.setdefault("dedup_key", f"sim-{len(self.events)}")
        action, key = event["event_action"], event["routing_key"]
        if action == "trigger":
            if dedup_key in self.early:
                self.early.discard(dedup_key)
                self.counts["late_triggers"] += 1
            self.open.setdefault(dedup_key, key)  # a repeat adds to the open incident
            self.resolved.pop(dedup_key, None)
        elif self.open.get(dedup_key) == key:
            if action == "resolve":
                self.resolved[dedup_key] = self.open.pop(dedup_key)
        elif self.resolved.get(dedup_key) == key:
            self.counts["repeats"] += 1  # a resend after the resolve: harmless
        elif dedup_key in self.open or dedup_key in self.resolved:
            self.counts["misrouted"] += 1  # PagerDuty drops it, yet answers 202
        else:
            self.early.add(dedup_key)
            self.counts["orphans"] += 1  # PagerDuty drops it, yet answers 202
        return {"status": "success", "message": "Event processed", "dedup_key": dedup_key}


def _checked(faults: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError("unknown fault setting(s): " + ", ".join(unknown))
    return faults


def _parse(path: str, body: bytes) -> tuple[Any, list[str]]:
    try:
        event = json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None, ["Malformed JSON"]
    return event, rules.problems(path, body, event)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _invalid(errors: list[str]) -> dict[str, Any]:
    return {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


def _entry(path: str, event: Any, status: int) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    return {
        "at": time.time(),
        "status": status,
        "kind": "change" if path.endswith("/change/enqueue") else "alert",
        "routing_key": event.get("routing_key"),
        "event_action": event.get("event_action"),
        "dedup_key": event.get("dedup_key"),
        "summary": payload.get("summary"),
        "custom_details": payload.get("custom_details"),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimulatorServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK stall some replies by 40 ms (as PagerDuty's servers do not).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        sim = self.server.simulator
        if self.path == "/_sim/events":
            with sim.lock:
                self._reply(200, {"events": list(sim.events)})
        elif self.path == "/_sim/stats":
            with sim.lock:
                self._reply(200, {"counts": dict(sim.counts), "faults": dict(sim.faults)})
        else:
            self._reply(404, {"status": "error", "message": "Not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sim = self.server.simulator
        try:
            if self.path == "/_sim/config":
                return self._reply(200, sim.configure(json.loads(body or b"{}")))
            if self.path == "/_sim/reset":
                sim.reset(**json.loads(body or b"{}"))
                return self._reply(200, {"status": "reset"})
        except (ValueError, TypeError) as exc:
            return self._reply(400, {"status": "error", "message": str(exc)})
        if self.path not in ("/v2/enqueue", "/v2/change/enqueue"):
            return self._reply(404, {"status": "error", "message": "Not found"})
        fate, status, reply = sim.handle(self.path, body)
        if fate == "drop":
            self.close_connection = True
            return
        if fate == "slow":
            time.sleep(sim.faults["slow_s"])
        headers = {}
        if (status == 429 or status >= 500) and sim.faults["retry_after"] is not None:
            headers["Retry-After"] = str(sim.faults["retry_after"])
        self._reply(status, reply, headers)

    def _reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__((host, port), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def serve(host: str = "127.0.0.1", port: int = 8090, **faults: Any) -> None:
    server = SimulatorServer(host, port, Simulator(**faults))
    log.info("PagerDuty simulator on http://%s:%d", host, server.server_address[1])
    server.serve_forever()
