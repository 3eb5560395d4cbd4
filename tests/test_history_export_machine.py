"""A hypothesis state machine of the whole export on a real redis-server and a real
PostgreSQL: steps added within small caps, exporters reading, writing and acknowledging,
or killed after reading or after committing, PostgreSQL down for a turn, the age trim
and shedding; once drained, every entry ever added is in the record exactly once or
counted lost, and the figures say so (``exported`` + ``lost`` = entries added)."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from relay.errors import RecordDown
from relay.history import History
from relay.history.pg.connect import connect
from relay.history.pg.exporter import Exporter, Tuning
from relay.history.pg.migrate import migrate
from relay.names import Names
from relay.settings import Settings
from relay.shed import Shed
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pdr")
TUNING = Tuning(batch=4, block_ms=1, claim_idle_ms=0, claim_every_s=0.0)


class ExportMachine(RuleBasedStateMachine):
    client: redis.Redis
    base: Settings
    conn: psycopg.Connection

    @initialize(entries=st.integers(5, 30), kb=st.integers(1, 8))
    def start(self, entries: int, kb: int) -> None:
        self.client.flushall()
        self.conn.execute("TRUNCATE pd_relay.steps, pd_relay.events")
        self.settings = replace(self.base, history_max_entries=entries,
                                history_max_mb=kb / 1024)
        self.history = History(self.client, NAMES, self.settings)
        self.added: set[str] = set()
        self.up = True
        self.n = 0
        self.exporters = [self.exporter() for _ in range(2)]
        self.exporters[0].ensure_group()

    def exporter(self) -> Exporter:
        self.n += 1

        def connector() -> psycopg.Connection:
            if not self.up:
                raise RecordDown(["PostgreSQL at postgresql://u:***@127.0.0.1/x: down"])
            return self.conn

        found = Exporter(self.client, self.settings, f"x{self.n}", TUNING,
                         clock=lambda: 1_000.0, connector=connector)
        found.retained_at = float("inf")  # no retention here
        return found

    @rule(n=st.integers(1, 12), size=st.integers(0, 300))
    def add(self, n: int, size: int) -> None:
        for _ in range(n):
            self.n += 1
            self.added.add(self.history.note("attempt", 0, i=f"e{self.n}", d="k",
                                             o="x" * size))

    @rule(which=st.integers(0, 1))
    def turn(self, which: int) -> None:
        try:
            self.exporters[which].turn()
        except RecordDown:
            assert not self.up

    @rule(which=st.integers(0, 1), committed=st.booleans())
    def killed(self, which: int, committed: bool) -> None:
        """Killed after reading a batch, or after committing it (before its XACK)."""
        dead = self.exporters[which]
        dead.held = dead._next(1_000.0)
        if committed and self.up:
            dead._write(dead.held)
        dead.conn = None  # its connection is the machine's, left open
        self.exporters[which] = self.exporter()

    @rule()
    def down_or_up(self) -> None:
        self.up = not self.up

    @rule(back=st.integers(0, 30))
    def age_trim(self, back: int) -> None:
        ids = [entry_id for entry_id, _ in self.client.xrange(NAMES.history)]
        if ids:
            self.history.trim(int(ids[max(0, len(ids) - back - 1)].split("-")[0]))

    @rule()
    def shed(self) -> None:
        Shed(self.client, NAMES).make_room()

    def teardown(self) -> None:
        if not hasattr(self, "added"):
            return
        self.up = True
        last = self.exporter()
        for _ in range(200):
            if not last.turn() and not self.client.xpending(
                    NAMES.history, NAMES.history_group)["pending"]:
                break
        recorded = {row[0] for row in self.conn.execute("SELECT entry FROM pd_relay.steps")}
        steps = self.conn.execute("SELECT count(*) FROM pd_relay.steps").fetchone()
        figures = self.client.hgetall(NAMES.history_export)
        assert recorded <= self.added and steps == (len(recorded),)
        assert int(figures.get("exported", 0)) == len(recorded)
        assert int(figures.get("lost", 0)) == len(self.added) - len(recorded)


def test_every_entry_is_recorded_once_or_counted_lost(real_redis: redis.Redis,
                                                      settings: Settings,
                                                      pg_dsn: str) -> None:
    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        ExportMachine.client = real_redis
        ExportMachine.base = replace(settings, history_dsn=pg_dsn)
        ExportMachine.conn = conn
        run = ExportMachine.TestCase
        run.settings = hypothesis_settings(max_examples=40, stateful_step_count=25,
                                           deadline=None,
                                           suppress_health_check=list(HealthCheck))
        run().runTest()
