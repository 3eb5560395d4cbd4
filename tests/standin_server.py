"""A provider's stand-in on 127.0.0.1 (tests/standins.py has the providers): an HTTP
server that reads each request as its provider would (``check``) and answers as it
does, a test's scripted answers first, keeping every request and its answer."""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from relay.stack.processes import HOST, free_port

Answer = tuple[int, dict[str, str], Any]  # status, headers, JSON body


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], raw: bytes):
        parts = urlsplit(target)
        self.method, self.path, self.raw = method, parts.path, raw
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.headers = {k.lower(): v for k, v in headers.items()}

    @property
    def type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.raw)

    def form(self) -> dict[str, str]:
        found = parse_qs(self.raw.decode(), keep_blank_values=True, strict_parsing=False)
        return {k: v[0] for k, v in found.items()}

    def basic(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class Refusal(Exception):
    """A request its provider would refuse: the stand-in answers ``answer``."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer)
        self.answer = answer


class StandIn:
    """A provider on 127.0.0.1: ``check`` reads each request as the provider would and
    returns its success answer (or raises Refusal); a test scripts other answers
    (``script``) that come first. Every request is kept, with what it was answered."""

    def __init__(self, check: Callable[[Request], Answer]) -> None:
        self.check = check
        self.lock = threading.Lock()
        self.scripted: deque[Answer] = deque()
        self.requests: list[tuple[Request, int]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, body = stand_in.answer(
                    Request("POST", self.path, dict(self.headers), raw))
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, free_port()), Handler)
        self.url = f"http://{HOST}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, *answers: Answer) -> None:
        with self.lock:
            self.scripted.extend(answers)

    def answer(self, request: Request) -> Answer:
        try:
            found = self.check(request)  # a malformed request is refused even if scripted
            with self.lock:
                if self.scripted:
                    found = self.scripted.popleft()
        except Refusal as refusal:
            found = refusal.answer
        except Exception as exc:  # noqa: BLE001 - the stand-in says what broke
            found = (400, {}, {"stand_in_error": f"{type(exc).__name__}: {exc}"})
        with self.lock:
            self.requests.append((request, found[0]))
        return found

    def taken(self) -> list[Request]:
        with self.lock:
            return [request for request, status in self.requests if status < 300]

    def statuses(self) -> list[int]:
        with self.lock:
            return [status for _, status in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def need(ok: object, answer: Answer) -> None:
    if not ok:
        raise Refusal(answer)
