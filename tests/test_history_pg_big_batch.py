"""A batch of many events in one transaction (found by ``scripts/bench --only history``:
a burst of 100-event requests makes entries of 100 accepted steps, and a batch of 500 of
them holds 50,000 events): the writer must commit it on a PostgreSQL with default
settings, where each lock a transaction takes uses a slot of a shared table of
``max_locks_per_transaction`` (64) x ``max_connections`` (100). One advisory lock per event
ran out of them ("out of shared memory"), and the exporter retried the same batch
forever: the record stopped for good."""

from __future__ import annotations

from relay.history.entries import Step
from relay.history.pg.connect import connect
from relay.history.pg.migrate import migrate
from relay.history.pg.partitions import Partitions
from relay.history.pg.writer import write

AT_MS = 1_796_474_856_737  # 2026-12-05


def test_a_batch_of_20000_events_is_written_in_one_transaction(pg_dsn: str) -> None:
    steps = [Step(f"{AT_MS + n // 100}-0", n % 100, "accepted", f"{n:016x}", f"burst-{n}", 1,
                  AT_MS + n // 100, {"a": "trigger", "s": "bench"}) for n in range(20_000)]
    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        written = write(conn, steps, (), Partitions())
        assert (written.events, written.steps) == (20_000, 20_000)
        states = conn.execute("SELECT state, count(*) FROM pd_relay.events GROUP BY 1")
        assert states.fetchall() == [("queued", 20_000)]
