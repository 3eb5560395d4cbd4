"""Stand-ins for the places channels send to, on 127.0.0.1: a webhook receiver (Slack's,
Mattermost's, Teams', Webex's or anyone's) whose answers a test scripts per path, and a
real SMTP server (aiosmtpd) that keeps what it is sent."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from relay.stack.processes import HOST, free_port

Answer = tuple[int, dict[str, str], str]  # status, headers, body
OK: Answer = (200, {}, "ok")


class WebhookReceiver:
    """Answers each path from its script (then ``OK``, or the path's ``steady`` answer);
    keeps every request's path, headers and JSON body, and what it answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self.steady: dict[str, Answer] = {}
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                status, headers, body = receiver.answer(self.path, dict(self.headers), raw)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, free_port()), Handler)
        self.url = f"http://{HOST}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, path: str, *answers: Answer, steady: Answer | None = None) -> None:
        with self.lock:
            self.scripts[path].extend(answers)
            if steady is not None:
                self.steady[path] = steady

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        with self.lock:
            queue = self.scripts[path]
            answer = queue.popleft() if queue else self.steady.get(path, OK)
            self.requests.append({"path": path, "headers": headers, "body": json.loads(raw),
                                  "status": answer[0], "at": time.monotonic()})
            return answer

    def taken(self, path: str) -> list[dict[str, Any]]:
        """The bodies of the requests to ``path`` answered 2xx, in arrival order."""
        with self.lock:
            return [r["body"] for r in self.requests if r["path"] == path and r["status"] < 300]

    def times(self, path: str) -> list[float]:
        """When each request to ``path`` came (``time.monotonic``), in arrival order."""
        with self.lock:
            return [r["at"] for r in self.requests if r["path"] == path]

    def tries(self, path: str) -> int:
        with self.lock:
            return sum(r["path"] == path for r in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailServer:
    """A real SMTP server on 127.0.0.1 keeping each message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.rcpt_answer = ""  # e.g. "550 5.1.1 no such user": what RCPT TO gets
        self.port = free_port()
        self.controller = Controller(self, hostname=HOST, port=self.port)
        self.controller.start()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:  # noqa: N802
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def close(self) -> None:
        self.controller.stop()
