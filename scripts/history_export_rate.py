#!/usr/bin/env python3
"""How fast one exporter writes a backlog to PostgreSQL: EVENTS events as a burst of
100-event requests (an accepted entry each) and a delivered step each, then one
``Exporter`` draining the stream (real redis-server, a local PostgreSQL). Prints the
events and steps written a second, and how long its batches took (a turn: read, write,
commit, acknowledge). With STORED, the record holds that many events first (90 days of
them, ``scripts/history_data.py``), as a record kept for months does.

    .venv/bin/python scripts/history_export_rate.py [EVENTS] [BATCH] [STORED]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from history_data import generate  # noqa: E402

from relay.history import RS, US, accepted  # noqa: E402
from relay.history.pg.connect import connect  # noqa: E402
from relay.history.pg.exporter import Exporter, Tuning  # noqa: E402
from relay.history.pg.migrate import migrate  # noqa: E402
from relay.ids import token  # noqa: E402
from relay.names import Names  # noqa: E402
from relay.settings import Settings  # noqa: E402
from relay.stack.binaries import redis_server  # noqa: E402
from relay.stack.postgres import LocalPostgres  # noqa: E402
from relay.stack.processes import free_port, wait_until  # noqa: E402

NAMES = Names("pdr")


def fill(client: redis.Redis, events: int) -> None:
    pipe = client.pipeline(transaction=False)
    now = int(time.time() * 1000)
    for call in range(events // 100):
        parts, ids = [], []
        for n in range(100):
            event_id, dedup_key = token(8), f"k{call}-{n}"
            ids.append((event_id, dedup_key))
            stored = {"t": now, "k": "alert", "i": event_id, "e": {
                "event_action": "trigger", "dedup_key": dedup_key, "payload": {
                    "summary": f"disk {n} full on db{call}", "source": f"db{call % 50}",
                    "severity": "critical"}}}
            parts.append(f"{1 + n % 3}{US}" + accepted(
                i=event_id, d=dedup_key, a="trigger", r="default", s="bench", n="node1",
                c="127.0.0.1", p=json.dumps(stored)).decode())
        pipe.xadd(NAMES.history, {"s": "accepted", "v": RS.join(parts)})
        for event_id, dedup_key in ids:
            pipe.xadd(NAMES.history, {"s": "delivered", "k": 0, "x": json.dumps(
                {"i": event_id, "d": dedup_key, "a": "trigger", "k": "ops", "r": "ok"})})
        if call % 20 == 0:
            pipe.execute()
    pipe.execute()


def main() -> int:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else Tuning().batch
    stored = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    where = Path(tempfile.mkdtemp(prefix="pdr-export-rate-"))
    where.chmod(0o755)  # as root, PostgreSQL runs as its own user
    sock = where / "redis.sock"
    server = subprocess.Popen([redis_server(), "--port", "0", "--unixsocket", str(sock),
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    postgres = LocalPostgres(where / "pg", free_port())
    try:
        client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
        wait_until(client.ping, 10, "redis-server")
        started = time.monotonic()
        postgres.start()
        print(f"PostgreSQL started in {time.monotonic() - started:.1f} s")
        with connect(postgres.dsn(), autocommit=True) as conn:
            migrate(conn)
        if stored:
            took = generate(postgres.dsn(), stored, say=lambda line: None)
            print(f"{stored:,} events stored first in {took:.0f} s")
        keys = where / "keys.txt"
        keys.write_text("R" + token(15) + "\n")
        settings = Settings(routing_keys=(keys.read_text().strip(),), keys_file=keys,
                            key_names=("ops",), history_dsn=postgres.dsn(),
                            history_max_entries=10_000_000, history_max_mb=4_000)
        fill(client, events)
        exporter = Exporter(client, settings, "rate", Tuning(batch=batch, block_ms=10))
        started, entries, turns = time.monotonic(), 0, []
        while True:
            began = time.monotonic()
            done = exporter.turn()
            if not done:
                break
            turns.append(time.monotonic() - began)
            entries += done
        took = time.monotonic() - started
        exporter.close()
        print(f"{events} events ({entries} entries, {2 * events} steps) exported in "
              f"{took:.1f} s: {events / took:,.0f} events/s, {2 * events / took:,.0f} "
              f"steps/s (batch {batch})")
        cuts = statistics.quantiles(turns, n=10) if len(turns) > 1 else turns * 9
        print(f"a batch ({len(turns)}): median {statistics.median(turns) * 1000:.0f} ms, "
              f"p90 {cuts[8] * 1000:.0f} ms, max {max(turns) * 1000:.0f} ms")
    finally:
        postgres.stop()
        server.kill()
        server.wait(5)
        shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
