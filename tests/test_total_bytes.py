"""The total cap reads one counter (``Names.queued_bytes``, issue 26): every path that
changes a key's queued ``bytes`` changes the total with it, in the same script. A model
-based test over enqueue (ENQUEUE), sorting and merging (storm mode's TAKE), delivery and
dead letters (FINISH), replay and purge of dead letters (DROP_DEAD), purges of queued
events (PURGE) and forget-key: after every step the counter is the sum of the keys'
bytes. fakeredis's Lua runs the scripts."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from dataclasses import replace
from typing import Any
from unittest import mock

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import relay.queues
from relay import keyring
from relay.deadletters import DeadLetters
from relay.keys import key_id, new_key
from relay.names import Names
from relay.router import Route, incident_id
from relay.settings import Settings
from relay.store import EventStore, Record, is_gap
from worker.delivery import Worker
from worker.pagerduty import Rejected

NAMES = Names()
INCIDENTS = ("i0", "i1", "i2")
ACTIONS = ("trigger", "trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "info")
# an event: its slot (negative: named; 0: held back), incident, action, severity,
# whether PagerDuty rejects it, padding
EVENTS = st.tuples(st.sampled_from([1, 2, 3, -1, -2, -3, 0]), st.sampled_from(INCIDENTS),
                   st.sampled_from(ACTIONS), st.sampled_from(SEVERITIES), st.booleans(),
                   st.integers(0, 300))


class Client(fakeredis.FakeRedis):
    def blmove(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a worker would wait for an arrival")


class PagerDutyStub:
    """Rejects what asks to be rejected (a dead letter), takes the rest."""

    def send(self, kind: str, body: bytes) -> str:
        if b"reject-me" in body:
            raise Rejected("HTTP 400", 400, "{}")
        return '{"status":"success"}'


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"a worker would sleep {seconds}s")


class TotalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fake = Client(decode_responses=True)
        self.keys = tuple(new_key() for _ in range(3))
        self.settings = Settings(
            routing_keys=self.keys, lease_ttl_s=3600, connect_timeout_s=0.2,
            read_timeout_s=0.5, rate_per_min=10**6, history_max_entries=0, retry_base_s=0.01,
            storm_mode="always", allow_anonymous=True)
        assert keyring.register(self.fake, NAMES, self.settings) == []  # (as processes start)
        self.store = EventStore(self.fake, NAMES, self.settings)
        self.workers = [self._worker(key) for key in self.keys]
        self.forgotten = False  # the third key was removed and forgotten
        self.n = 0
        self.patch = mock.patch.object(relay.queues, "connect", lambda *_, **__: self.fake)
        self.patch.start()

    def _worker(self, key: str) -> Worker:
        made = Worker(self.settings, key, self.fake, pagerduty=PagerDutyStub(),  # type: ignore[arg-type]
                      sleep=no_sleep, worker_id=f"w-{key_id(key)}")
        made.lease.clock = lambda: 0.0
        assert made.lease.acquire()
        return made

    def _busy(self, k: int) -> bool:
        kid = key_id(self.keys[k])
        if self.fake.llen(NAMES.inflight(kid)):
            return True
        return any(not is_gap(str(raw)) for name in NAMES.waiting(kid)
                   for raw in self.fake.lrange(name, 0, -1))

    def _live(self, slot: int) -> bool:
        return not (self.forgotten and abs(slot) == 3)

    @rule(batches=st.lists(st.lists(EVENTS, min_size=1, max_size=4), min_size=1, max_size=3))
    def enqueue(self, batches: list[list[tuple[int, str, str, str, bool, int]]]) -> None:
        requests = []
        for batch in batches:
            items = []
            for slot, incident, action, severity, reject, pad in batch:
                if not self._live(slot):
                    slot = 1
                body: dict[str, Any] = {"event_action": action, "dedup_key": incident,
                                        "x": self.n}
                if action == "trigger":
                    body["payload"] = {"summary": "reject-me" if reject else "s",
                                       "source": "h", "severity": severity,
                                       "custom_details": {"pad": "p" * pad}}
                self.n += 1
                items.append((Route(slot, incident_id(incident), action, "default"),
                              Record("alert", body, 1_000 + self.n, f"id{self.n}").encode(),
                              "", "", "a"))
            requests.append(items)
        self.store.enqueue(requests)

    @rule(k=st.integers(0, 2), times=st.integers(1, 4))
    def deliver(self, k: int, times: int) -> None:
        if k == 2 and self.forgotten:
            return
        for _ in range(times):
            if not self._busy(k):
                break
            self.workers[k].step()

    @rule(k=st.integers(0, 2))
    def sort(self, k: int) -> None:
        """Storm mode sorts what arrived (and merges repeated triggers)."""
        if not (k == 2 and self.forgotten):
            self.workers[k].lanes.take(take=False)

    @rule(k=st.integers(0, 2), incident=st.sampled_from([*INCIDENTS, None]))
    def purge(self, k: int, incident: str | None) -> None:
        """``pd-relay queue purge key-N [--match dedup_key=...] --yes``."""
        if k == 2 and self.forgotten:
            return
        match = [f'dedup_key="{incident}"'] if incident else []
        args = argparse.Namespace(action="purge", key=f"key-{k + 1}", match=match,
                                  all=not match, yes=True)
        with contextlib.redirect_stdout(io.StringIO()):
            assert relay.queues.command(self.settings, args) == 0

    @rule(data=st.data(), replay=st.booleans())
    def dead_letter(self, data: st.DataObject, replay: bool) -> None:
        """Replay a dead letter onto its key's queue, or purge it."""
        letters = sorted(self.fake.hkeys(NAMES.dead))
        if not letters:
            return
        chosen = data.draw(st.sampled_from(letters))
        store = DeadLetters(self.fake, NAMES, self.settings.routing_keys)
        if replay and json.loads(self.fake.hget(NAMES.dead, chosen))["key_id"] != key_id(
                self.keys[2]) or not self.forgotten:
            (store.replay if replay else store.purge)(chosen)

    @rule()
    def forget_key(self) -> None:
        """The third key leaves the keys file; ``pd-relay forget-key`` takes its events."""
        if self.forgotten:
            return
        self.forgotten = True
        self.workers[2].lease.release()
        keyring.forget(self.fake, NAMES, replace(self.settings, routing_keys=self.keys[:2]),
                       key_id(self.keys[2]))

    @invariant()
    def the_total_is_the_keys_bytes(self) -> None:
        keys_bytes = sum(int(self.fake.hget(NAMES.stats(key_id(key)), "bytes") or 0)
                         for key in self.keys)
        assert int(self.fake.get(NAMES.queued_bytes) or 0) == keys_bytes

    def teardown(self) -> None:
        try:
            for k in range(2 if self.forgotten else 3):
                for _ in range(10 * self.n + 10):
                    if not self._busy(k):
                        break
                    self.workers[k].step()
            self.the_total_is_the_keys_bytes()
            assert int(self.fake.get(NAMES.queued_bytes) or 0) == 0
        finally:
            self.patch.stop()


TestTotalMachine = TotalMachine.TestCase
TestTotalMachine.settings = hypothesis_settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
