"""A hypothesis state machine, on a real redis-server and a real PostgreSQL: steps added
to the stream within small caps, two exporters taking turns, dying before writing or
after committing (before acknowledging), PostgreSQL going down and up, the age trim and
shedding. Once PostgreSQL is up and an exporter has drained the stream, the record holds
every entry still in the stream, each step once; ``lost`` counts exactly the entries the
record lacks, ``exported`` exactly those it holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from relay.errors import RecordDown
from relay.history import History
from relay.history.pg.connect import connect
from relay.history.pg.exporter import DOWN, Exporter, Tuning
from relay.history.pg.migrate import migrate
from relay.names import Names
from relay.settings import Settings
from relay.shed import Shed
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pdr")
TUNING = Tuning(batch=5, block_ms=1, claim_idle_ms=0, claim_every_s=0.0,
                retention_every_s=1e12)


class ExportMachine(RuleBasedStateMachine):
    client: redis.Redis
    base: Settings
    conn: psycopg.Connection

    @initialize(entries=st.integers(8, 40), kb=st.integers(2, 8))
    def start(self, entries: int, kb: int) -> None:
        self.client.flushall()
        self.conn.execute("TRUNCATE pd_relay.events, pd_relay.steps")
        self.settings = replace(self.base, history_max_entries=entries,
                                history_max_mb=kb / 1024)
        self.history = History(self.client, NAMES, self.settings)
        self.up = True
        self.added: set[str] = set()
        self.made = 0
        self.exporters = [self.exporter(), self.exporter()]
        self.exporters[0].ensure_group()

    def exporter(self) -> Exporter:
        self.made += 1

        def connector() -> psycopg.Connection:
            if not self.up:
                raise RecordDown(["down"])
            return connect(self.settings.history_dsn, autocommit=True)

        return Exporter(self.client, self.settings, f"x{self.made}", TUNING,
                        sleep=lambda _: None, connector=connector)

    def replace(self, which: int) -> None:
        self.exporters[which].close()
        self.exporters[which] = self.exporter()

    @rule(n=st.integers(1, 12), size=st.integers(0, 300))
    def add(self, n: int, size: int) -> None:
        for _ in range(n):
            self.made += 1
            self.added.add(self.history.note("attempt", 0, i=f"e{self.made}", d="k",
                                             o="x" * size))

    @rule(which=st.integers(0, 1))
    def turn(self, which: int) -> None:
        exporter = self.exporters[which]
        if not self.up and exporter.conn is not None:
            exporter.close()  # the server went away under it
        try:
            exporter.turn()
        except DOWN:
            pass

    @rule(which=st.integers(0, 1), after_commit=st.booleans())
    def die(self, which: int, after_commit: bool) -> None:
        exporter = self.exporters[which]
        try:
            if not exporter.held:
                exporter.held = exporter._next(0.0)
            if after_commit and exporter.held and self.up:
                exporter._write(exporter.held)
        except DOWN:
            pass
        self.replace(which)

    @rule(up=st.booleans())
    def postgres(self, up: bool) -> None:
        self.up = up

    @rule(back=st.integers(0, 30))
    def age_trim(self, back: int) -> None:
        ids = [entry_id for entry_id, _ in self.client.xrange(NAMES.history)]
        if ids:
            self.history.trim_age(keys=[NAMES.history], args=[ids[max(0, len(ids) - back - 1)]])

    @rule()
    def shed(self) -> None:
        Shed(self.client, NAMES).make_room()

    def teardown(self) -> None:
        if not hasattr(self, "exporters"):
            return
        self.up = True
        for exporter in self.exporters:
            exporter.close()
        last = self.exporter()
        for _ in range(200):
            if not last.turn() and not self.client.xpending(
                    NAMES.history, NAMES.history_group)["pending"]:
                break
        last.close()
        stream = {entry_id for entry_id, _ in self.client.xrange(NAMES.history)}
        record = {row[0] for row in self.conn.execute("SELECT entry FROM pd_relay.steps")}
        steps = self.conn.execute("SELECT count(*) FROM pd_relay.steps").fetchone()[0]
        figures = self.client.hgetall(NAMES.history_export)
        assert stream <= record <= self.added
        assert steps == len(record)  # each step once
        assert int(figures.get("lost", 0)) == len(self.added - record)
        assert int(figures.get("exported", 0)) == len(record)


@pytest.fixture
def machine_conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        yield conn


def test_the_record_is_whole_and_the_figures_exact(real_redis: redis.Redis, settings: Settings,
                                                   pg_dsn: str, machine_conn) -> None:
    ExportMachine.client = real_redis
    ExportMachine.base = replace(settings, history_dsn=pg_dsn)
    ExportMachine.conn = machine_conn
    run = ExportMachine.TestCase
    run.settings = hypothesis_settings(max_examples=30, stateful_step_count=25,
                                       deadline=None, suppress_health_check=list(HealthCheck))
    run().runTest()
