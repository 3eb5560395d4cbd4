"""A hypothesis state machine on a real redis-server: steps added within small caps (by
count and bytes), an exporter reading (delivered), the age trim and shedding; after every
step ``lost`` equals the model's count: the entries that went without ever being
delivered to the export group, each once."""

from __future__ import annotations

from dataclasses import replace

import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from relay.history import History
from relay.names import Names
from relay.settings import Settings
from relay.shed import Shed
from tests.heartbeat_fixtures import real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pdr")


def key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class LossMachine(RuleBasedStateMachine):
    client: redis.Redis
    base: Settings

    @initialize(entries=st.integers(5, 40), kb=st.integers(1, 8), grouped=st.booleans())
    def start(self, entries: int, kb: int, grouped: bool) -> None:
        self.client.flushall()
        self.history = History(self.client, NAMES, replace(
            self.base, history_max_entries=entries, history_max_mb=kb / 1024))
        self.grouped = grouped
        if grouped:
            self.client.xgroup_create(NAMES.history, NAMES.history_group, id="0",
                                      mkstream=True)
        self.delivered = (0, 0)  # the group's last delivered id
        self.lost = 0
        self.n = 0

    def stream(self) -> set[str]:
        return {entry_id for entry_id, _ in self.client.xrange(NAMES.history)}

    def gone(self, before: set[str], added: set[str]) -> None:
        removed = (before | added) - self.stream()
        if self.grouped:
            self.lost += sum(key(entry_id) > self.delivered for entry_id in removed)

    @rule(n=st.integers(1, 30), size=st.integers(0, 400))
    def add(self, n: int, size: int) -> None:
        for _ in range(n):
            before = self.stream()
            self.n += 1
            added = self.history.note("attempt", 0, i=f"e{self.n}", d="k", o="x" * size)
            self.gone(before, {added})

    @rule(count=st.integers(1, 30))
    def read(self, count: int) -> None:
        if not self.grouped:
            return
        found = self.client.xreadgroup(NAMES.history_group, "a", {NAMES.history: ">"},
                                       count=count)
        for entry_id, _ in (found[0][1] if found else []):
            self.delivered = max(self.delivered, key(entry_id))

    @rule(back=st.integers(0, 40))
    def age_trim(self, back: int) -> None:
        ids = sorted(self.stream(), key=key)
        if not ids:
            return
        cut = key(ids[max(0, len(ids) - back - 1)])[0]
        before = self.stream()
        self.history.trim(cut)
        self.gone(before, set())

    @rule()
    def shed(self) -> None:
        before = self.stream()
        Shed(self.client, NAMES).make_room()
        self.gone(before, set())

    @invariant()
    def lost_is_the_models(self) -> None:
        if hasattr(self, "history"):
            assert int(self.client.hget(NAMES.history_export, "lost") or 0) == self.lost


def test_lost_counts_exactly(real_redis: redis.Redis, settings: Settings) -> None:
    LossMachine.client = real_redis
    LossMachine.base = settings
    run = LossMachine.TestCase
    run.settings = hypothesis_settings(max_examples=60, stateful_step_count=30,
                                       deadline=None, suppress_health_check=list(HealthCheck))
    run().runTest()
