"""Channels in a storm (issue 30), for ``scripts/bench --only channels``: 1,000 triggers
in 10 s on one route that tells two chat channels, on real processes (redis-server, the
simulator, an ingress node, a worker, ``pd-relay channel-worker``) and a stand-in chat
server:

- ``plain``, a Slack channel at its pace (60 messages a minute): what reaches the chat
  while the run lasts, and the most in any 60 s (goal: at most its pace);
- ``digest``, the same with ``digest: 3s`` (relay.channels.gather): its messages per
  period (goal: at most one per period), and how many of the 1,000 its digests counted
  by the end (goal: all).

A tree that does not gather digests yet (before the digests' work) runs the plain
channel alone and says so. Beside it, ``storm_with_channels`` plays the PagerDuty storm
of scripts/storm.py with its route telling both channels, to compare its figures with
those of the storm bench without channels (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from relay.errors import ConfigError
from relay.names import Names
from relay.routes.config import load
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import HOST, free_port, wait_until

EVENTS = 1_000
DIGEST_S = 3.0
STORM_S = 10.0  # the storm's length: about three digest periods
SENDERS = 8
COUNTED = re.compile(r"(\d+) notices? ")  # a digest's headline (relay.channels.digest.outline)


class Chat:
    """A stand-in chat server: answers 200 to every POST and keeps (time, path, body)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken: list[tuple[float, str, dict[str, Any]]] = []
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with chat.lock:
                    chat.taken.append((time.time(), self.path, json.loads(raw or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, free_port()), Handler)
        self.url = f"http://{HOST}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(at, body) for at, where, body in self.taken if where == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def routes_text(chat: Chat, keys: list[str], digest: bool) -> str:
    extra = f"\n    digest: {DIGEST_S:g}s" if digest else ""
    listed = "[plain, digest]" if digest else "[plain]"
    return f"""
channels:
  - name: plain
    type: slack
    url: {chat.url}/plain
  - name: digest
    type: slack
    url: {chat.url}/digest{extra}
routes:
  - name: storm
    keys: [{', '.join(keys)}]
    channels: {listed}
"""


def reads_digests(workdir: Path, chat: Chat) -> bool:
    """Whether this tree reads a channel's ``digest:`` and gathers its notices (the
    digests' work is in: relay.channels.gather)."""
    if importlib.util.find_spec("relay.channels.gather") is None:
        return False
    path = workdir / "probe-routes.yml"
    path.write_text(routes_text(chat, ["key-1"], digest=True))
    path.chmod(0o600)
    try:
        found = load(path, ("key-1",))
    except ConfigError:
        return False
    return any(getattr(c, "digest_s", 0) for c in found.channels)


@contextmanager
def chat_routes(workdir: Path, keys: list[str]) -> Iterator[tuple[Chat, Path, bool]]:
    """A stand-in chat server and a routes file telling it (with ``digest:`` when this
    tree reads it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    chat = Chat()
    try:
        digest = reads_digests(workdir, chat)
        path = workdir / "routes.yml"
        path.write_text(routes_text(chat, keys, digest))
        path.chmod(0o600)
        yield chat, path, digest
    finally:
        chat.close()


def storm(url: str, events: int = EVENTS, spread_s: float = STORM_S) -> float:
    """Post ``events`` triggers (each its own incident, severities mixed) from ``SENDERS``
    threads, evenly over ``spread_s`` (so that they span several digest periods); return
    how long it took."""
    started = time.monotonic()
    severities = ("warning", "error", "info", "critical")

    def send(n: int) -> None:
        with requests.Session() as session:
            for i in range(n, events, SENDERS):
                time.sleep(max(0.0, started + i * spread_s / events - time.monotonic()))
                body = {"event_action": "trigger", "dedup_key": f"storm-{i}", "payload": {
                    "summary": f"storm {i}", "source": f"host-{i % 50}",
                    "severity": severities[i % 4]}}
                reply = session.post(url, json=body, timeout=10)
                reply.raise_for_status()

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, range(SENDERS)))
    return time.monotonic() - started


def most_in(times: list[float], span: float) -> int:
    """The most of ``times`` within any ``span`` seconds."""
    ordered, most, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] > span:
            first += 1
        most = max(most, last - first + 1)
    return most


def counted(body: dict[str, Any]) -> int:
    """How many notices one digest message stands for (0: not a digest)."""
    digest = body.get("digest")
    if isinstance(digest, dict) and isinstance(digest.get("total"), int):
        return int(digest["total"])
    found = COUNTED.search(str(body.get("text", "")).split("\n")[0])
    return int(found.group(1)) if found else 0


def run(workdir: Path, seconds: float = 40.0, events: int = EVENTS,
        follow_s: float = 0.0) -> dict[str, Any]:
    """The storm on one route to both channels; the chat watched for ``seconds`` from
    the storm's start (the digest channel's count waited for up to that again); then,
    with ``follow_s``, the plain channel followed up to that long more, until its
    messages and the digests it got (those gathered while it was behind) account for
    every trigger (``plain_counted``, ``plain_all_s`` from the storm's start)."""
    stack_dir = workdir / "stack"
    with chat_routes(workdir, ["key-1"]) as (chat, routes, digest):
        stack = Stack(stack_dir, keys=1, RELAY_ROUTES_FILE=str(routes),
                      RELAY_LOG_LEVEL="WARNING", RELAY_RATE_PER_MIN=6000)  # PagerDuty: fast
        try:
            stack.start_simulator()
            url = stack.start_ingress() + "/v2/enqueue"
            stack.start_worker(0)
            channel_worker = stack.start_channel_worker()
            started = time.time()
            posted_s = storm(url, events)
            wait_until(lambda: len(stack.delivered()) >= events, 120,
                       "PagerDuty to take the storm", every=0.5)
            delivered_s = time.time() - started
            found: dict[str, Any] = {"events": events, "posted_s": posted_s,
                                     "pagerduty_s": delivered_s, "digest": digest}
            if digest:  # every notice counted in a digest, or the time is up
                deadline = time.time() + seconds
                while time.time() < deadline and \
                        sum(counted(body) for _, body in chat.at("/digest")) < events:
                    time.sleep(0.5)
            time.sleep(max(0.0, started + seconds - time.time()))
            plain = [at for at, _ in chat.at("/plain")]
            found.update(plain_sent=len([at for at in plain if at < started + seconds]),
                         plain_most_60s=most_in(plain, 60.0), watched_s=seconds)
            found.update(waiting(stack), channel_worker_cpu_s=cpu_s(channel_worker.popen.pid))
            deadline = time.time() + follow_s
            while follow_s and time.time() < deadline and plain_counted(chat) < events:
                time.sleep(0.5)
            found.update(plain_counted=plain_counted(chat), plain_digests=sum(
                1 for _, body in chat.at("/plain") if counted(body)),
                plain_all_s=time.time() - started if plain_counted(chat) >= events else None)
            if digest:
                bodies = chat.at("/digest")
                times = [at for at, _ in bodies]
                found.update(
                    digests=len(bodies), digest_most_per_period=most_in(times, DIGEST_S * 0.9),
                    digest_gap_s=min((b - a for a, b in zip(times, times[1:], strict=False)),
                                     default=None),
                    digest_counted=sum(counted(body) for _, body in bodies))
            return found
        finally:
            stack.close()


def plain_counted(chat: Chat) -> int:
    """The triggers the plain channel was told of: a message each, or a digest's count."""
    return sum(counted(body) or 1 for _, body in chat.at("/plain"))


def waiting(stack: Stack) -> dict[str, Any]:
    """Notices still in the outbox (not yet made jobs or gathered), the dispatcher's
    rounds held back by RQ's backlog bound (relay.channels.rqjobs.RQ_BACKLOG_MAX), and
    the notices waiting in open gatherings for their digests, per channel and reason
    (``{"plain": {"backlog": 880}}``; a tree without ``open_gatherings``: none)."""
    names, client = Names("pdr"), stack.redis.client()
    try:
        from relay.channels.gather import open_gatherings
    except ImportError:
        gathered: dict[str, dict[str, int]] = {}
    else:
        gathered = {channel: {reason: held for reason, (_, held) in rows.items()}
                    for channel, rows in open_gatherings(client, names).items()}
    return {"outbox_left": int(client.llen(names.outbox)),
            "dispatch_held": int(client.hget(names.channel_stats, "dispatch_held") or 0),
            "gathered": gathered}


def gathered_text(gathered: dict[str, dict[str, int]]) -> str:
    """``waiting``'s gatherings in a line: "plain backlog 880, digest digest 12"."""
    return ", ".join(f"{channel} {reason} {n:,}" for channel, rows in sorted(gathered.items())
                     for reason, n in sorted(rows.items()) if n) or "none"


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def storm_with_channels(workdir: Path, scale: float, channel_worker: bool = True,
                        **env: Any) -> dict[str, Any]:
    """scripts/storm.py's storm, its three keys' one route telling both channels (with
    ``channel_worker`` False: the notices are stored, nothing sends them)."""
    import storm as pagerduty_storm

    with chat_routes(workdir, ["key-1", "key-2", "key-3"]) as (chat, routes, digest):
        found = pagerduty_storm.run(workdir / "stack", scale, channel_worker=channel_worker,
                                    RELAY_ROUTES_FILE=str(routes), **env)
        found["channel_messages"] = len(chat.at("/plain")) + len(chat.at("/digest"))
        found["digest"] = digest
        found["digest_counted"] = sum(counted(body) for _, body in chat.at("/digest"))
        return found
