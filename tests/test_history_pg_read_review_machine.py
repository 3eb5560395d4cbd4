"""A hypothesis state machine: events accepted and their steps added to the history
stream, two exporters reading, committing to a real PostgreSQL, acknowledging, crashing
(their entries held, committed or not) and claiming each other's, the stream trimmed of
what is acknowledged; after every step the readers (a page of the list, a state, an
incident's trace, one event) show every step of every event exactly once, in order: no
gap and no duplicate as entries move from the stream's tail into the record."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import psycopg
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from relay.history import RS, US, accepted, line
from relay.history.pg.reader import Record
from relay.history.pg.stories import Finder
from relay.history.search import Query
from relay.names import Names
from relay.settings import Settings
from tests.pg_rows import entries_of, migrated, write

NAMES = Names("pdr")
KEYS = ("k0", "k1", "k2")
EXPORTERS = ("a", "b")


def state_of(steps: list[str]) -> str:
    return ("delivered" if "delivered" in steps else
            "retrying" if "attempt" in steps else "queued")


def test_readers_see_each_step_once_whatever_the_exporters_do(settings: Settings,
                                                               pg_dsn: str) -> None:
    migrated(pg_dsn)
    recorded = replace(settings, history_dsn=pg_dsn, prefix="pdr")
    record = Record(pg_dsn)

    class ReadMachine(RuleBasedStateMachine):
        @initialize(grouped=st.booleans())
        def start(self, grouped: bool) -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE pd_relay.events, pd_relay.steps")
            self.client = fakeredis.FakeRedis(decode_responses=True)
            self.finder = Finder(recorded, self.client, record)
            self.ms = 1_800_000_000_000
            self.events: dict[str, list[str]] = {}  # id: its steps, in order
            self.keys: dict[str, str] = {}  # id: dedup_key
            self.at: dict[str, int] = {}  # id: when accepted (ms)
            self.held: dict[str, list[str]] = {name: [] for name in EXPORTERS}  # read
            self.committed: dict[str, list[str]] = {name: [] for name in EXPORTERS}
            self.grouped = False
            if grouped:
                self.group()

        def add(self, fields: dict[str, Any]) -> None:
            self.ms += 7
            self.client.xadd(NAMES.history, fields, id=f"{self.ms}-0")

        @precondition(lambda self: not self.grouped)
        @rule()
        def group(self) -> None:  # the first exporter starts
            self.client.xgroup_create(NAMES.history, NAMES.history_group, id="0",
                                      mkstream=True)
            self.grouped = True

        @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3))
        def accept(self, keys: list[str]) -> None:
            parts = []
            for key in keys:
                event_id = f"{len(self.events):016x}"
                self.events[event_id], self.keys[event_id] = ["accepted"], key
                self.at[event_id] = self.ms + 7
                parts.append("1" + US + accepted(i=event_id, d=key, a="trigger",
                                                  s="src").decode())
            self.add({"s": "accepted", "v": RS.join(parts)})

        @precondition(lambda self: self.events)
        @rule(data=st.data(), step=st.sampled_from(("attempt", "delivered")))
        def step(self, data: st.DataObject, step: str) -> None:
            event_id = data.draw(st.sampled_from(sorted(self.events)))
            self.events[event_id].append(step)
            self.add({"s": step, "k": "1", "x": line(i=event_id, d=self.keys[event_id],
                                                       o="ok").decode()})

        @precondition(lambda self: self.grouped)
        @rule(name=st.sampled_from(EXPORTERS), count=st.integers(1, 4))
        def read(self, name: str, count: int) -> None:
            found = self.client.xreadgroup(NAMES.history_group, name,
                                           {NAMES.history: ">"}, count=count)
            for _, entries in found or []:
                self.held[name] += [entry_id for entry_id, _ in entries]

        @rule(name=st.sampled_from(EXPORTERS))
        def commit(self, name: str) -> None:
            if self.held[name]:
                write(pg_dsn, entries_of(self.client, NAMES.history, self.held[name]), KEYS)
                self.committed[name] += self.held[name]
                self.held[name] = []

        @rule(name=st.sampled_from(EXPORTERS))
        def ack(self, name: str) -> None:
            if self.committed[name]:
                self.client.xack(NAMES.history, NAMES.history_group, *self.committed[name])
                self.committed[name] = []

        @rule(name=st.sampled_from(EXPORTERS))
        def crash(self, name: str) -> None:  # its entries stay pending in the group
            self.held[name], self.committed[name] = [], []

        @precondition(lambda self: self.grouped)
        @rule(name=st.sampled_from(EXPORTERS))
        def claim(self, name: str) -> None:  # every pending entry, as after its idle time
            other = [n for n in EXPORTERS if n != name][0]
            answer = self.client.xautoclaim(NAMES.history, NAMES.history_group, name,
                                            min_idle_time=0, start_id="0-0", count=1000)
            claimed = [entry_id for entry_id, _ in answer[1]]
            self.held[other] = [e for e in self.held[other] if e not in claimed]
            self.committed[other] = [e for e in self.committed[other] if e not in claimed]
            self.held[name] = [e for e in self.held[name] + self.committed[name]
                               if e in claimed] + [e for e in claimed if e not in
                                                   self.held[name] + self.committed[name]]
            self.committed[name] = []

        @precondition(lambda self: self.grouped)
        @rule()
        def trim(self) -> None:  # the caps trim what the record holds (acknowledged)
            info = next(g for g in self.client.xinfo_groups(NAMES.history)
                        if g["name"] == NAMES.history_group)
            pending = self.client.xpending(NAMES.history, NAMES.history_group)
            low = pending["min"] if pending["pending"] else None
            if low is None:
                after = self.client.xrange(NAMES.history, min="(" + info["last-delivered-id"],
                                           count=1)
                low = after[0][0] if after else None
            if low is None:
                low = f"{self.ms + 1}-0"
            self.client.xtrim(NAMES.history, minid=low)

        def check(self, stories: list[Any], wanted: set[str]) -> None:
            shown = {story.id: [s["step"] for s in story.steps] for story in stories}
            assert len(shown) == len(stories)  # no event twice
            assert set(shown) == wanted
            for event_id, steps in shown.items():
                assert steps == self.events[event_id], event_id

        @invariant()
        def readers_agree_with_the_model(self) -> None:
            if not hasattr(self, "finder"):
                return
            self.check(self.finder.search(Query(limit=500)), set(self.events))
            for state in ("queued", "delivered"):
                self.check(self.finder.search(Query(state=state, limit=500)),
                           {e for e, steps in self.events.items() if state_of(steps) == state})
            for key in KEYS:
                self.check(self.finder.search(Query(dedup_key=key, limit=0)),
                           {e for e in self.events if self.keys[e] == key})
            until = self.ms - 20  # whole stories of the events accepted before it
            self.check(self.finder.search(Query(until_ms=until, limit=500)),
                       {e for e, at in self.at.items() if at < until})
            for event_id in sorted(self.events)[-2:]:
                self.check(self.finder.search(Query(event_id=event_id, limit=1)), {event_id})

    try:
        run_state_machine_as_test(ReadMachine, settings=hypothesis_settings(
            max_examples=25, stateful_step_count=30, deadline=None,
            suppress_health_check=list(HealthCheck)))
    finally:
        record.close()
