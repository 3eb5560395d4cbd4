"""A state machine over the record and the stream: events accepted, workers' steps, the
real exporter (relay.history.pg.exporter) exporting, exporters dying before or after their
commit (entries left pending, claimed later), the stream trimmed. After every step, a
search through relay.history.pg.stories shows each step the record or the stream holds
exactly once, in its own event's story: no gap, no duplicate."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import fakeredis
import psycopg
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from relay.app import create_app
from relay.history import History
from relay.history.entries import steps_of
from relay.history.pg.exporter import Exporter, Tuning
from relay.history.pg.stories import Finder
from relay.history.search import Query
from relay.names import Names
from relay.settings import Settings
from tests.conftest import trigger
from tests.pg_rows import migrated

NAMES = Names("pdr")
QUICK = Tuning(batch=3, block_ms=1, claim_idle_ms=0, claim_every_s=0.0)


def test_the_record_and_the_tail_show_each_step_once(settings: Settings, pg_dsn: str) -> None:
    migrated(pg_dsn)
    recorded = replace(settings, history_dsn=pg_dsn)

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE pd_relay.events, pd_relay.steps")
            self.fake = fakeredis.FakeRedis(decode_responses=True)
            self.web = create_app(recorded, client=self.fake).test_client()
            self.finder = Finder(recorded, self.fake)
            self.ids: list[tuple[str, str]] = []
            self.replies = 0

        def teardown(self) -> None:
            assert self.finder.record is not None
            self.finder.record.close()

        def exporter(self, name: str) -> Exporter:
            return Exporter(self.fake, recorded, name, QUICK)

        @rule(count=st.integers(1, 3))
        def accept(self, count: int) -> None:
            events = [trigger(dedup_key=f"k{len(self.ids) + n}") for n in range(count)]
            assert self.web.post("/v2/enqueue", json=events).status_code == 202
            [(entry_id, fields)] = self.fake.xrevrange(NAMES.history, count=1)
            self.ids += [(s.event_id, s.dedup_key) for s in steps_of(entry_id, fields)]

        @rule(which=st.integers(0, 50), step=st.sampled_from(["attempt", "delivered"]))
        def work(self, which: int, step: str) -> None:
            if self.ids:
                event_id, dedup_key = self.ids[which % len(self.ids)]
                self.replies += 1
                History(self.fake, NAMES, recorded).note(step, 1, i=event_id, d=dedup_key,
                                                         r=f"r{self.replies}")

        @rule()
        def export(self) -> None:
            found = self.exporter("steady")
            found.turn()
            found.close()

        @rule(commit=st.booleans())
        def die(self, commit: bool) -> None:
            """An exporter killed after reading a batch, before or after its COMMIT."""
            found = self.exporter("doomed")
            found.held = found._next(0.0)
            if commit and found.held:
                found._write(found.held)
            found.close()

        @rule(keep=st.integers(0, 6))
        def trim(self, keep: int) -> None:
            self.fake.xtrim(NAMES.history, maxlen=keep, approximate=False)

        @invariant()
        def each_step_once(self) -> None:
            visible = self.visible()
            shown: Counter[tuple[str, str, str]] = Counter()
            stories = self.finder.search(Query(limit=0))
            assert len({s.id for s in stories}) == len(stories)  # no story twice
            for story in stories:
                mine = Counter((story.id, s["step"], str(s.get("r", ""))) for s in story.steps)
                assert mine == Counter({k: v for k, v in visible.items() if k[0] == story.id})
                shown += mine
            accepted = {k[0] for k in visible if k[1] == "accepted"}
            assert accepted <= {s.id for s in stories}  # every event whose start is kept
            for _, dedup_key in self.ids[:1] + self.ids[-1:]:  # trace: an incident's
                mine = Counter((story.id, s["step"], str(s.get("r", "")))
                               for story in self.finder.search(Query(dedup_key=dedup_key,
                                                                     limit=0))
                               for s in story.steps)
                ids = {i for i, d in self.ids if d == dedup_key}
                assert mine == Counter({k: v for k, v in visible.items() if k[0] in ids})

        def visible(self) -> Counter[tuple[str, str, str]]:
            """Each step the record or the stream holds, once (named by entry and place)."""
            found: dict[tuple[str, int], tuple[str, str, str]] = {}
            with psycopg.connect(pg_dsn) as conn:
                for entry, n, event_id, step, detail in conn.execute(
                        "SELECT entry, n, event_id, step, detail FROM pd_relay.steps"):
                    found[(entry, n)] = (event_id, step, str(detail.get("r", "")))
            for entry_id, fields in self.fake.xrange(NAMES.history):
                for s in steps_of(entry_id, fields):
                    found[(s.entry, s.n)] = (s.event_id, s.step, str(s.fields.get("r", "")))
            return Counter(found.values())

    run_state_machine_as_test(Machine, settings=hypothesis_settings(
        max_examples=30, stateful_step_count=15, deadline=None,
        suppress_health_check=list(HealthCheck)))
