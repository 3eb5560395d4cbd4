"""Counts of the ingress's decisions per route and per source (accepted, dropped,
suppressed, refused), kept in memory and added to one Redis hash about once a second by
a background thread: nothing on a request's path but a dict update under a lock.

A node killed by SIGKILL loses at most its last second of counts; a node that cannot
reach Redis keeps them until it can. Fields are ``route|NAME|OUTCOME`` and
``source|NAME|OUTCOME``; ``read`` turns the hash into rows for status and metrics. Each
maintenance window's triggers held back are also counted under ``window|KEY|suppressed``
(``Window.key``), for its notices (``relay.channels.maintenance``, which deletes the
field once the window is gone).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)
OUTCOMES = ("accepted", "dropped", "suppressed", "held", "refused")


class Tally:
    def __init__(self, client: redis.Redis, hash_name: str, every_s: float = 1.0,
                 wait: Callable[[float], bool] | None = None) -> None:
        self.client = client
        self.hash_name = hash_name
        self.every_s = every_s
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.wait = wait or self.stopped.wait

    def add(self, kind: str, name: str, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.counts[f"{kind}|{name}|{outcome}"] += n

    def add_all(self, counts: Counter[tuple[str, str, str]]) -> None:
        """A request's counts, (kind, name, outcome) -> n, under one lock."""
        with self.lock:
            for (kind, name, outcome), n in counts.items():
                self.counts[f"{kind}|{name}|{outcome}"] += n

    def flush(self) -> None:
        with self.lock:
            taken, self.counts = self.counts, Counter()
        if not taken:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for field, n in taken.items():
                    pipe.hincrby(self.hash_name, field, n)
                pipe.execute()
        except redis.RedisError as exc:
            log.debug("decision counts kept for later: %s", type(exc).__name__)
            with self.lock:
                self.counts.update(taken)

    def start(self) -> None:
        def run() -> None:
            while not self.wait(self.every_s):
                self.flush()
            self.flush()

        threading.Thread(target=run, name="tally", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()


def read(client: redis.Redis, hash_name: str) -> dict[str, list[dict[str, Any]]]:
    """``{"routes": [...], "sources": [...]}``: a row per name with every outcome."""
    rows: dict[str, dict[str, dict[str, Any]]] = {"route": {}, "source": {}}
    for field, value in client.hgetall(hash_name).items():
        kind, _, rest = str(field).partition("|")
        name, _, outcome = rest.rpartition("|")
        if kind in rows and outcome in OUTCOMES:
            row = rows[kind].setdefault(name, {"name": name, **dict.fromkeys(OUTCOMES, 0)})
            row[outcome] = int(value)
    return {"routes": sorted(rows["route"].values(), key=lambda r: r["name"]),
            "sources": sorted(rows["source"].values(), key=lambda r: r["name"])}
