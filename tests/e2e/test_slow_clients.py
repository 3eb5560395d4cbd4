"""End to end at nginx: one address holding hundreds of idle and trickling connections
keeps no page out (issue 25). 127.0.0.2 plays the attacker, 127.0.0.1 the monitoring tool;
real nginx from the project's template, a real ingress node, worker and simulator.

What nginx can bound, and what this test shows of it:
- bodies trickled a byte at a time: counted by ``limit_conn`` (their headers were read),
  so beyond the per-client limit they are refused with a 429 at once;
- headers trickled a byte at a time: not counted by ``limit_conn`` (it counts requests
  whose header was read), but ``client_header_timeout`` is a deadline for the whole
  header (nginx closes them however steadily bytes arrive), and ``worker_connections``
  is sized so that a few hundred of them, plus idle ones, leave room for everyone else;
- connections kept alive after a request: closed after ``keepalive_timeout``.
"""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import HOST, wait_until
from relay.stack.render import Limits
from tests.conftest import trigger

ATTACKER = "127.0.0.2"
CONNECTIONS = 20  # the per-client connection limit nginx enforces here
IDLE = 300  # connected, nothing sent
KEPT_ALIVE = 50  # one request answered, then idle between requests
BODY_TRICKLERS = 200  # headers complete, then the body a byte at a time
HEADER_TRICKLERS = 1100  # the header a byte at a time: more than nginx's old 1024 slots
PACE_S = 0.2  # between two bytes of a trickler (pacing only: every wait below is bounded)
PAGE_WAIT_S = 5.0  # well inside client_header_timeout (10 s): the tricklers all still hold
HEADER_DEADLINE_S = 10  # client_header_timeout in nginx/pd-relay.conf.template
KEEPALIVE_S = 15  # keepalive_timeout in nginx/pd-relay.conf.template
LINGER_S = 5  # lingering_time: how long nginx reads and drops the body of a refused request
FILES = IDLE + KEPT_ALIVE + BODY_TRICKLERS + 2 * HEADER_TRICKLERS + 200


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    kind: str
    opened: float = field(default_factory=time.monotonic)
    reply: bytes = b""
    closed: bool = False

    @property
    def status(self) -> int | None:
        parts = self.reply.split(b" ", 2)
        return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None

    @property
    def holding(self) -> bool:
        """Open, and nginx has not answered."""
        return not self.closed and not self.reply

    def poll(self) -> None:
        """Take what nginx sent (without waiting); note a close."""
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.closed = True
                self.sock.close()
                return
            self.reply += data

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except BlockingIOError:
            pass
        except OSError:
            self.closed = True
            self.sock.close()


class Attacker:
    """Connections from 127.0.0.2 to nginx; a thread trickles a byte to each trickler
    every ``PACE_S`` until nginx closes it (answered or not) and, while ``replenish`` is
    set, replaces the header tricklers nginx closes, so the attack holds its size."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.conns: list[Conn] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.replenish = threading.Event()
        self.replenish.set()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self, kind: str, first: bytes = b"") -> Conn:
        sock = socket.socket()
        sock.bind((ATTACKER, 0))
        sock.settimeout(5)
        sock.connect(self.address)
        if first:
            sock.sendall(first)
        sock.setblocking(False)
        conn = Conn(sock, kind)
        with self.lock:
            self.conns.append(conn)
        return conn

    def kept_alive(self) -> None:
        """A request answered on a keep-alive connection, which then stays idle."""
        conn = self.open("kept", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: conn.poll() or b"\r\n\r\n" in conn.reply, 5, "a /healthz reply")
        assert conn.status == 200 and not conn.closed, conn.reply

    def body(self) -> None:
        self.open("body", b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")

    def header(self) -> None:
        self.open("header", b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nX-Slow: ")

    def run(self) -> None:
        while not self.stop.wait(PACE_S):
            for conn in self.snapshot():
                conn.poll()
                if not conn.closed and conn.kind in ("body", "header"):
                    conn.send(b"a")  # refused or not: a bad client keeps sending
                if conn.closed and conn.kind == "header" and self.replenish.is_set():
                    with self.lock:
                        self.conns.remove(conn)
                    try:
                        self.header()
                    except OSError:
                        pass  # nginx full: the old configuration's failure, seen by the page

    def snapshot(self, kind: str | None = None) -> list[Conn]:
        with self.lock:
            return [c for c in self.conns if kind is None or c.kind == kind]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for conn in self.snapshot():
            conn.sock.close()


@pytest.fixture
def attacked(make_stack) -> Iterator[tuple[Stack, str, Attacker]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FILES:
        pytest.skip(f"needs {FILES} open files (the hard limit here is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FILES), hard))
    stack = make_stack(keys=1)
    try:
        socket.create_connection((HOST, 1), source_address=(ATTACKER, 0), timeout=1)
    except ConnectionRefusedError:
        pass
    except OSError:
        pytest.skip("this machine has no 127.0.0.2")
    stack.start_simulator()
    node = stack.start_ingress().removeprefix("http://")
    stack.start_worker(0)
    url = stack.start_nginx([node], limits=Limits(rate=100_000, burst=100_000,
                                                  connections=CONNECTIONS))
    attacker = Attacker(url)
    try:
        yield stack, url, attacker
    finally:
        attacker.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_page_gets_through_while_one_address_holds_idle_and_trickling_connections(
        attacked) -> None:
    stack, url, attacker = attacked
    for _ in range(KEPT_ALIVE):
        attacker.kept_alive()
    kept_at = time.monotonic()
    for _ in range(IDLE):
        attacker.open("idle")
    for _ in range(BODY_TRICKLERS):
        attacker.body()
    for _ in range(HEADER_TRICKLERS):
        try:
            attacker.header()
        except OSError:
            break  # nginx closed what it could not take: the page below will show it
    attacked_at = time.monotonic()
    attacker.thread.start()

    # The page, from 127.0.0.1, while all of it holds: accepted, then delivered.
    def page() -> bool:
        event = trigger("through the slow clients", dedup_key="through",
                        routing_key=stack.keys[0])
        return requests.post(url + "/v2/enqueue", json=event, timeout=2).status_code == 202

    wait_until(page, PAGE_WAIT_S, "the page to be accepted while one address holds "
               f"{IDLE} idle and {BODY_TRICKLERS + HEADER_TRICKLERS} trickling connections")
    holding = [c for c in attacker.snapshot("header") if c.holding]
    assert len(holding) >= HEADER_TRICKLERS * 0.9, "the attack had ended before the page"
    wait_until(lambda: any(e["dedup_key"] == "through" for e in stack.delivered()), 15,
               "the page delivered to PagerDuty")

    # Bodies trickled beyond the per-client limit were refused at once with a JSON 429,
    # and closed lingering_time later though they go on sending; at most the limit's
    # worth stay held (nginx has no deadline for a whole body: see docs/DESIGN.md).
    bodies = attacker.snapshot("body")

    def refused() -> list[Conn]:
        found = [c for c in bodies if c.status == 429]
        return found if len(found) >= BODY_TRICKLERS - CONNECTIONS else []

    wait_until(refused, 10, "the bodies beyond the per-client limit refused")
    assert all(b"throttle exceeded" in c.reply for c in refused())
    assert sum(c.holding for c in bodies) <= CONNECTIONS
    wait_until(lambda: all(c.closed for c in refused()),
               attacked_at + LINGER_S + 5 - time.monotonic(),
               "nginx to close the refused bodies, still sending, at lingering_time")

    # Headers trickled, however steadily, are closed at client_header_timeout after
    # their connection opened; idle keep-alive connections after keepalive_timeout.
    attacker.replenish.clear()
    headers = attacker.snapshot("header")
    newest = max(c.opened for c in headers)
    wait_until(lambda: not any(c.holding for c in headers),
               newest + HEADER_DEADLINE_S + 5 - time.monotonic(),
               "nginx to close every header trickler at its deadline")
    kept = attacker.snapshot("kept")
    wait_until(lambda: all(c.closed for c in kept),
               kept_at + KEEPALIVE_S + 5 - time.monotonic(),
               "nginx to close the idle keep-alive connections")
