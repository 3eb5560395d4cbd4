"""A real ``pd-relay history-exporter`` process killed with SIGKILL in the middle of a
batch (its transaction open, its entries held), and again at whatever moment: another
exporter claims what it held, and the record ends with every step once, the figures
counting every entry once (real redis-server, real PostgreSQL)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import psycopg
import redis

from relay.app import create_app
from relay.history import History
from relay.history.entries import steps_of
from relay.history.pg.connect import connect
from relay.history.pg.migrate import migrate
from relay.history.pg.partitions import Partitions
from relay.history.search import Query, search
from relay.names import Names
from relay.settings import Settings
from relay.stack.processes import Process, wait_until
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pdr")
PD_RELAY = str(Path(sys.executable).parent / "pd-relay")


def exporter(name: str, client: redis.Redis, settings: Settings, logs: Path,
             *flags: str) -> Process:
    sock = client.connection_pool.connection_kwargs["path"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_REDIS_URL=f"unix://{sock}", RELAY_KEYS_FILE=str(settings.keys_file),
               RELAY_HISTORY_DSN=settings.history_dsn, RELAY_LOG_LEVEL="INFO")
    return Process(name, [PD_RELAY, "history-exporter", "--name", name, *flags], env, logs)


def pending(client: redis.Redis) -> int:
    try:
        return int(client.xpending(NAMES.history, NAMES.history_group)["pending"])
    except redis.ResponseError:
        return 0


def test_kill_9_mid_batch_then_anywhere_nothing_twice_nothing_missing(
        real_redis: redis.Redis, settings: Settings, pg_dsn: str, tmp_path: Path) -> None:
    client = real_redis
    client.flushall()
    recorded = replace(settings, history_dsn=pg_dsn)
    app = create_app(recorded, client=client).test_client()
    for call in range(40):
        assert app.post("/v2/enqueue", json=[{
            "event_action": "trigger", "dedup_key": f"k{call}-{n}", "payload": {
                "summary": "s", "source": "h", "severity": "info"}} for n in range(25)]
        ).status_code == 202
    history = History(client, NAMES, recorded)
    for story in search(client, NAMES, Query(limit=1000)):
        history.note("delivered", 0, i=story.id, d=story.dedup_key, r="ok")
    entries = client.xrange(NAMES.history)
    steps = sum(len(steps_of(entry_id, fields)) for entry_id, fields in entries)
    assert len(entries) == 1040 and steps == 2000
    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        Partitions().ahead(conn, int(entries[0][0].split("-")[0]))
    started: list[Process] = []

    def run(name: str, *flags: str) -> Process:
        started.append(exporter(name, client, recorded, tmp_path, *flags))
        return started[-1]

    def exported() -> int:
        return int(client.hget(NAMES.history_export, "exported") or 0)

    try:
        # 1. mid-batch: its transaction waits on a lock this test holds
        with psycopg.connect(pg_dsn) as blocker, \
                psycopg.connect(pg_dsn, autocommit=True) as look:
            blocker.execute("LOCK TABLE pd_relay.steps IN SHARE MODE")
            victim = run("victim", "--batch", "100")
            wait_until(lambda: look.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pd-relay' "
                "AND wait_event_type = 'Lock'").fetchone()[0], 30, "the victim's batch waiting")
            assert pending(client) == 100
            victim.kill()  # SIGKILL, its transaction open
            blocker.rollback()
        # 2. again, at whatever moment it is in once some batches are committed
        again = run("again", "--batch", "50")
        wait_until(lambda: exported() >= 300, 60, "some batches exported")
        again.kill()
        held = pending(client)
        rescuer = run("rescuer", "--batch", "200", "--claim-idle-s", "0.2")
        wait_until(lambda: pending(client) == 0 and exported() == len(entries), 60,
                   "every entry exported")
        rescuer.terminate()  # SIGTERM: its log lines written
    finally:
        for process in started:
            process.kill()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT (entry, n)) "
                            "FROM pd_relay.steps").fetchone() == (steps, steps)
        assert conn.execute("SELECT state, count(*) FROM pd_relay.events GROUP BY state"
                            ).fetchall() == [("delivered", 1000)]
    assert client.hget(NAMES.history_export, "lost") is None
    logs = [(tmp_path / f"{name}.log").read_text() for name in ("victim", "again", "rescuer")]
    assert not any(pg_dsn in log for log in logs) and "history exporter" in logs[2]
    print(f"held by the killed exporter: 100 mid-batch, then {held}")
