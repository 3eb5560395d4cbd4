"""A hypothesis state machine of heartbeats' pages through the real evaluator and sender
(relay.heartbeats.evaluator, relay.heartbeats.pages) into a key's queue that is small
(1 event) and drained now and then, as a worker does: pings, time passing, rounds.
Whatever the order, for each check what PagerDuty got, what waits in the queue and what
waits in the outbox, in that order, is trigger, resolve, trigger, ... (one incident per
outage, never out of order), and its last word matches the check's state (nothing lost)."""

from __future__ import annotations

import fakeredis
from hypothesis import settings as run_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check
from relay.heartbeats.pages import Pages
from relay.heartbeats.store import Heartbeats
from relay.keys import key_id, new_key
from relay.names import Names
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.store import Record
from tests.heartbeat_fixtures import Clock

NAMES = Names("pdm")
CHECKS = (Check("backup", grace_s=30, period_s=60, keys=("db",)),
          Check("etl", grace_s=10, period_s=120, keys=("db",)))
KEYS = (new_key(),)


class PagesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.clock = Clock()
        settings = Settings(routing_keys=KEYS, key_names=("db",), queue_max_events=1,
                            storm_mode="off")
        routes = RoutesFile(heartbeats=CHECKS)
        self.store = Heartbeats(self.fake, NAMES, clock=self.clock)
        self.evaluator = Evaluator(self.fake, NAMES, Catalog(routes, None),
                                   Pages(self.fake, NAMES, settings, routes).send,
                                   clock=self.clock, watch_ingress=False, gap_s=1e6)
        self.queue = NAMES.queue(key_id(KEYS[0]))
        self.delivered: list[tuple[str, str]] = []  # (dedup_key, action) a worker sent

    def teardown(self) -> None:
        self.fake.flushall()

    @rule(check=st.sampled_from(CHECKS), signal=st.sampled_from(["success", "fail", "start"]))
    def ping(self, check: Check, signal: str) -> None:
        self.store.ping(check, signal)

    @rule(seconds=st.integers(1, 200))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def a_round(self) -> None:
        self.evaluator.round()

    @rule(count=st.integers(1, 3))
    def the_worker_sends(self, count: int) -> None:
        for raw in self.fake.lpop(self.queue, count) or []:
            event = Record.decode(raw).event
            self.delivered.append((event["dedup_key"], event["event_action"]))

    def said(self, check: Check) -> list[str]:
        """What the relay said of ``check``, in order: sent, queued, still in the outbox."""
        queued = [Record.decode(raw).event for raw in self.fake.lrange(self.queue, 0, -1)]
        waiting = [page.action for _raw, page in self.store.pages(100) if page.name == check.name]
        return ([action for key, action in self.delivered if key == check.dedup_key]
                + [e["event_action"] for e in queued if e["dedup_key"] == check.dedup_key]
                + waiting)

    @invariant()
    def one_incident_per_outage_in_order_and_none_lost(self) -> None:
        for check, state in zip(CHECKS, self.store.states(CHECKS), strict=True):
            said = self.said(check)
            assert said == ["trigger", "resolve"] * (len(said) // 2) + \
                ["trigger"] * (len(said) % 2), (check.name, said)
            assert (said[-1:] == ["trigger"]) == (state.state == "down"), (state, said)

    @invariant()
    def the_queue_is_never_overfilled(self) -> None:
        assert self.fake.llen(self.queue) <= 1


PagesMachine.TestCase.settings = run_settings(max_examples=60, stateful_step_count=40,
                                              deadline=None)
TestPagesMachine = PagesMachine.TestCase
