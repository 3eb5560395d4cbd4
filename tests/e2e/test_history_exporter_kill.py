"""End to end with real processes and a real PostgreSQL: an exporter killed (SIGKILL)
mid-export; another claims what it held; every event is in the record once, nothing
counted lost (the issue's "idempotence across a kill -9 of the exporter")."""

from __future__ import annotations

import psycopg
import redis

from relay.names import Names
from relay.stack.processes import wait_until
from tests.conftest import trigger

NAMES = Names("pdr")
BATCHES, SIZE = 60, 10


def test_an_exporter_killed_mid_export_loses_and_doubles_nothing(make_stack, pg_dsn) -> None:
    stack = make_stack(keys=1, RELAY_HISTORY_DSN=pg_dsn, RELAY_PREFIX="pdr")
    stack.history_migrate()
    stack.start_ingress()
    for b in range(BATCHES):
        assert stack.post([trigger(f"disk {b}-{n}", dedup_key=f"d{b}-{n}")
                           for n in range(SIZE)]).status_code == 202
    client = redis.Redis.from_url(stack.env["RELAY_REDIS_URL"], decode_responses=True)
    entries = client.xlen(NAMES.history)
    first = stack.start_history_exporter("--batch", "2", "--claim-idle-s", "1")
    wait_until(lambda: int(client.hget(NAMES.history_export, "exported") or 0) >= 10, 30,
               "the first exporter under way")
    first.kill()  # SIGKILL: whatever it held stays pending, maybe committed
    stack.start_history_exporter("--batch", "7", "--claim-idle-s", "1")

    def done() -> bool:
        info = client.xinfo_groups(NAMES.history)[0]
        return info["pending"] == 0 and info["last-delivered-id"] == client.xrevrange(
            NAMES.history, count=1)[0][0]

    wait_until(done, 60, "every entry exported and acknowledged")
    with psycopg.connect(pg_dsn) as conn:
        events, ids = conn.execute(
            "SELECT count(*), count(DISTINCT id) FROM pd_relay.events").fetchone()
        steps = conn.execute("SELECT count(*) FROM pd_relay.steps").fetchone()[0]
    assert events == ids == steps == BATCHES * SIZE
    figures = client.hgetall(NAMES.history_export)
    assert int(figures["exported"]) == entries and "lost" not in figures
