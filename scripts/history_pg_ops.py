#!/usr/bin/env python3
"""Two figures of the record in PostgreSQL, for the README (History) and DESIGN:

- how long the stack's own PostgreSQL (``relay.stack.postgres.LocalPostgres``) takes to
  start: the first time (initdb, start, the relay's database) and later (start only);
- the disk an event takes with its steps (accepted, an attempt, delivered), indexes
  included: events stored by the ingress (a Flask test client on fakeredis), their steps
  written by the exporter's writer, then ``pg_total_relation_size`` over the schema.

    .venv/bin/python scripts/history_pg_ops.py [EVENTS]     (default 20000)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import fakeredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.app import create_app  # noqa: E402
from relay.history import History  # noqa: E402
from relay.history.entries import steps_of  # noqa: E402
from relay.history.pg.connect import connect  # noqa: E402
from relay.history.pg.migrate import migrate  # noqa: E402
from relay.history.pg.partitions import Partitions  # noqa: E402
from relay.history.pg.writer import write  # noqa: E402
from relay.keys import new_key  # noqa: E402
from relay.names import Names  # noqa: E402
from relay.settings import Settings  # noqa: E402
from relay.stack.postgres import LocalPostgres  # noqa: E402
from relay.stack.processes import free_port  # noqa: E402

BATCH = 500


def start_times(rounds: int = 3) -> None:
    for _ in range(rounds):
        home = Path(tempfile.mkdtemp(prefix="pdr-pg-"))
        home.chmod(0o755)  # as root the server runs as `postgres`, who must enter it
        server = LocalPostgres(home / "pg", free_port())
        try:
            began = time.monotonic()
            server.start()
            first = time.monotonic() - began
            server.stop()
            began = time.monotonic()
            server.start()
            later = time.monotonic() - began
        finally:
            server.stop()
            shutil.rmtree(home, ignore_errors=True)
        print(f"start: first (initdb) {first:.2f} s, later {later:.2f} s")


def event(n: int) -> dict[str, object]:
    host = f"host{n % 997}.example.org"
    return {"event_action": "trigger", "dedup_key": f"{host}-disk-{n}", "payload": {
        "summary": f"disk /var on {host} is 93% full (threshold 90%)", "source": host,
        "severity": "warning", "component": "disk", "class": "storage", "group": "dbs",
        "custom_details": {"mount": "/var", "used_pct": 93}}}


def size_per_event(events: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="pdr-pg-"))
    home.chmod(0o755)
    (home / "keys.txt").write_text(f"{new_key()} ops\n")
    (home / "keys.txt").chmod(0o600)
    server = LocalPostgres(home / "pg", free_port())
    server.start()
    try:
        settings = Settings.from_env({
            "RELAY_KEYS_FILE": str(home / "keys.txt"), "RELAY_HISTORY_DSN": server.dsn(),
            "RELAY_HISTORY_MAX_ENTRIES": "10000000", "RELAY_HISTORY_MAX_MB": "4000",
            "RELAY_ALLOW_ANONYMOUS": "true"})
        names = Names(settings.prefix)
        fake = fakeredis.FakeRedis(decode_responses=True)
        app = create_app(settings, client=fake).test_client()
        history = History(fake, names, settings)
        partitions, after = Partitions(), "-"
        with connect(server.dsn(), autocommit=True) as conn:
            migrate(conn)
            for start in range(0, events, BATCH):
                app.post("/v2/enqueue", json=[event(n) for n in range(start, start + BATCH)])
                for entry_id, fields in fake.xrange(names.history, min=after):
                    for step in steps_of(entry_id, fields):
                        if step.step == "accepted":
                            history.note("attempt", step.slot, i=step.event_id,
                                         d=step.dedup_key, o="ok", st=202, k="ops")
                            history.note("delivered", step.slot, i=step.event_id,
                                         d=step.dedup_key, r="ok", k="ops")
                batch = fake.xrange(names.history, min=after)
                write(conn, [s for e, f in batch for s in steps_of(e, f)], settings.key_names,
                      partitions)
                after = "(" + batch[-1][0]
            conn.execute("VACUUM ANALYZE")
            counted = conn.execute("SELECT (SELECT count(*) FROM pd_relay.events), "
                                   "(SELECT count(*) FROM pd_relay.steps)").fetchone()
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace"
                " n ON n.oid = c.relnamespace WHERE n.nspname = 'pd_relay' AND c.relkind = 'r'"
            ).fetchone()
        assert counted is not None and size is not None
        total = float(size[0])
        print(f"disk: {counted[0]} events, {counted[1]} steps: {total / 1e6:.1f} MB, "
              f"{total / counted[0]:.0f} bytes an event with its steps, indexes included")
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    start_times()
    size_per_event(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
