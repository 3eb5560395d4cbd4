#!/usr/bin/env python3
"""What adding a history entry costs Redis, before and after the count of entries lost
from the record (relay.history.loss): ``XADD ... MAXLEN ~`` as the scripts did, against
``XADD`` then ``keep_count``, the stream at its count cap, without and with the export
group (a reader keeping up). Server-side: a Lua loop of 20,000 adds, best of 5.

    .venv/bin/python scripts/history_add_cost.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.history.loss import LOSS  # noqa: E402
from relay.stack.binaries import redis_server  # noqa: E402

VALUE = "y" * 120
BEFORE = f"""for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', 2000, '*', 's', 'x', 'v', '{VALUE}') end"""
NOW = LOSS + f"""for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 's', 'x', 'v', '{VALUE}') keep_count(KEYS[1], 2000) end"""
ADDS = 20_000


def per_add_us(client: redis.Redis, lua: str, group: bool) -> float:
    client.flushall()
    if group:
        client.xgroup_create("h", "pd-relay-export", id="$", mkstream=True)
    script = client.register_script(lua)
    script(keys=["h"], args=[3_000])  # at the cap
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        script(keys=["h"], args=[ADDS])
        if group:  # the exporter keeps up
            client.xreadgroup("pd-relay-export", "a", {"h": ">"}, count=100_000)
        best = min(best, time.perf_counter() - started)
    return best / ADDS * 1e6


def main() -> int:
    with tempfile.TemporaryDirectory() as where:
        sock = Path(where) / "redis.sock"
        server = subprocess.Popen([redis_server(), "--port", "0", "--unixsocket", str(sock),
                                   "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(unix_socket_path=str(sock))
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            for name, lua in (("before: XADD MAXLEN ~", BEFORE), ("now: XADD, keep_count", NOW)):
                for group in (False, True):
                    print(f"{name:24s} {'with' if group else 'no':>4s} export group: "
                          f"{per_add_us(client, lua, group):5.2f} us per entry")
        finally:
            server.kill()
            server.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
