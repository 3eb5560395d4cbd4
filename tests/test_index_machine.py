"""The index of remembered incidents (``Names.where``, issue 26) kept in step with the
per-key sets and the held set by every path: ENQUEUE (hashed, named and held events,
resolves, the per-set cap, an idle incident forgotten at lookup), the retention sweep,
SHED and forget-key. A hypothesis state machine on fakeredis (the scripts' Lua): after
every step each index entry names a set that remembers its incident, every remembered
incident is indexed there, owners belong to indexed incidents, and a follow-up goes to
the key the index placed its incident on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relay import keyring
from relay.housekeeping import retention
from relay.keys import key_id, new_key
from relay.names import HELD, Names
from relay.router import Route
from relay.settings import Settings
from relay.shed import Shed
from relay.store import EventStore, Full, Record, now_ms
from tests.conftest import trigger

NAMES = Names()
LONG_AGO = 1_000  # ms since the epoch: silent since then, an incident is idle
INCIDENTS = ("a", "b", "c", "d", "e")
SENDERS = ("a", "s:one", "s:two", "*s:any")
# an event: its slot (negative: named; 0: held back), incident, action, sender
EVENTS = st.tuples(st.sampled_from([1, 2, 3, -1, -2, -3, 0]), st.sampled_from(INCIDENTS),
                   st.sampled_from(["trigger", "trigger", "acknowledge", "resolve"]),
                   st.sampled_from(SENDERS))


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.keys = tuple(new_key() for _ in range(3))
        self.kids = [key_id(key) for key in self.keys]
        self.settings = Settings(routing_keys=self.keys, incidents_max=3,
                                 incident_ttl_s=3600, allow_anonymous=True)
        assert keyring.register(self.fake, NAMES, self.settings) == []
        self.store = EventStore(self.fake, NAMES, self.settings)
        self.forgotten = False  # key 3 left the keys file and was forgotten

    def _sets(self) -> dict[str, str]:
        found = {HELD: NAMES.held}
        for kid in self.kids[:2] if self.forgotten else self.kids:
            found[kid] = NAMES.incidents(kid)
        return found

    @rule(requests=st.lists(st.lists(EVENTS, min_size=1, max_size=4), min_size=1,
                            max_size=3))
    def send(self, requests: list[list[tuple[int, str, str, str]]]) -> None:
        batches, expected = [], []
        for request in requests:
            items = []
            for slot, incident, action, sender in request:
                if self.forgotten and abs(slot) == 3:
                    slot = 1
                body: dict[str, Any] = trigger(dedup_key=incident) if action == "trigger" \
                    else {"event_action": action, "dedup_key": incident}
                items.append((Route(slot, incident, action, "default"),
                              Record("alert", body, 0).encode(), "", "", sender))
                where = self.fake.hget(NAMES.where, incident)
                fresh = where is not None and float(self.fake.zscore(
                    NAMES.remembered(where), incident) or 0) > LONG_AGO
                sent = where == HELD and action == "trigger" and slot != 0  # held no more
                expected.append(None if not fresh or slot < 0 or sent else
                                0 if where == HELD else self.kids.index(str(where)) + 1)
            batches.append(items)
        answers = self.store.enqueue(batches)
        at = 0
        for number, items in enumerate(batches):
            first = {}  # per incident, its first event's place in the call
            for n, (route, *_rest) in enumerate(items):
                first.setdefault(route.incident, at + n)
            for incident, place in first.items():
                want, got = expected[place], answers[place]
                earlier = any(r.incident == incident for items_ in batches[:number]
                              for r, *_ in items_)
                if want is not None and isinstance(got, int) and not earlier:
                    assert got == want, (incident, got, want)  # its follow-up follows it
            at += len(items)
        assert len(answers) == at and all(
            isinstance(a, int | Full) or hasattr(a, "position") for a in answers)

    @rule(incident=st.sampled_from(INCIDENTS))
    def silent_for_its_ttl(self, incident: str) -> None:
        for name in self._sets().values():
            if self.fake.zscore(name, incident) is not None:
                self.fake.zadd(name, {incident: LONG_AGO})

    @rule()
    def sweep(self) -> None:
        retention.sweep(self.fake, NAMES, replace(
            self.settings, routing_keys=self.keys[:2] if self.forgotten else self.keys),
            now_ms())

    @rule()
    def shed(self) -> None:
        Shed(self.fake, NAMES).make_room()

    @rule()
    def forget_key(self) -> None:
        if self.forgotten:
            return
        self.forgotten = True
        remaining = replace(self.settings, routing_keys=self.keys[:2])
        self.fake.delete(NAMES.queue(self.kids[2]))  # (its events: dead letters, or none)
        keyring.forget(self.fake, NAMES, remaining, self.kids[2])
        self.settings = remaining
        self.store = EventStore(self.fake, NAMES, remaining)

    @invariant()
    def the_index_and_the_sets_agree(self) -> None:
        index = self.fake.hgetall(NAMES.where)
        sets = self._sets()
        for incident, where in index.items():
            assert where in sets, (incident, where)
            assert self.fake.zscore(sets[where], incident) is not None, (incident, where)
        for where, name in sets.items():
            for incident in self.fake.zrange(name, 0, -1):
                assert index.get(incident) == where, (incident, where, index.get(incident))
        assert set(self.fake.hkeys(NAMES.owners)) <= set(index)


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
