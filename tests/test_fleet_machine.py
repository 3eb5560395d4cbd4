"""Many keys' leases over several worker processes, as a state machine (issue 26).

Real ``worker.fleet.Fleet`` objects (their KEEP ticks, their workers' fences) share one
fakeredis whose clock the test moves, as it moves every process's clock. Processes tick,
are killed (and restarted: a new worker id), frozen and thawed; keys are given up and
served again (SIGHUP); a process attempts a send for a key whenever the rules say, and
the send goes ahead only where the fence (``Worker._fence``) lets it.

Checked:
- Never two senders of one key at once: a send occupies its start plus the send budget
  (connect + read timeout); two sends of one key by different processes never overlap.
- Replies may come late (the clock moves between Redis running a tick and the process
  reading its reply).
- What a process believes is its lease is its lease in Redis, for at least as long.
- At most one process believes a key's lease is its own at any moment.
- Every key is served while a process lives: after ticking the live processes for a
  lease TTL and a bit more, each key's lease is held by a live, unfrozen process that
  serves it.
"""

from __future__ import annotations

import hashlib
import time
import types
from typing import Any
from unittest import mock

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from worker.delivery import LeaseLost
from worker.fleet import Fleet

NAMES = Names()
TTL_S = 3.0
BUDGET_S = 1.5  # connect 0.5 + read 1.0


class Model:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


class FleetMachine(RuleBasedStateMachine):
    @initialize(processes=st.integers(2, 3), keys=st.integers(1, 5))
    def start(self, processes: int, keys: int) -> None:
        self.clock = Model()
        patched = types.SimpleNamespace(time=self.clock, sleep=time.sleep,
                                        monotonic=time.monotonic)
        self.patch = mock.patch("fakeredis._socket._base.time", patched)
        self.patch.start()
        self.redis = fakeredis.FakeRedis(decode_responses=True)
        # the same keys every run (which share a key falls in decides who takes it and
        # who gives it back: random keys would make a failure impossible to replay)
        self.keys = [hashlib.md5(f"key-{n}".encode()).hexdigest() for n in range(keys)]
        self.settings = Settings(routing_keys=tuple(self.keys), lease_ttl_s=TTL_S,
                                 connect_timeout_s=0.5, read_timeout_s=1.0)
        self.n = processes
        self.fleets: list[Fleet] = []
        self.dead: set[int] = set()
        self.frozen: set[int] = set()
        self.sends: dict[str, tuple[int, float]] = {}  # key id -> last send (process, at)
        self.restarts = 0
        for i in range(processes):
            self.fleets.append(self._fleet(i))

    def _fleet(self, i: int) -> Fleet:
        self.restarts += 1
        fleet = Fleet(self.settings, self.keys, self.redis, prefer=(i + 1, self.n),
                      pagerduty=object(), clock=self.clock, wall=self.clock,
                      sleep=lambda s: None, worker_id=f"p{i}-{self.restarts}")
        return fleet

    def teardown(self) -> None:
        if hasattr(self, "patch"):
            self.patch.stop()

    def _live(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.dead and i not in self.frozen]

    # ---- rules ---------------------------------------------------------------------

    @rule(i=st.integers(0, 2), late=st.sampled_from([0.0, 0.0, 0.4, 1.2, 2.9]))
    def tick(self, i: int, late: float) -> None:
        """Process ``i`` ticks; Redis's reply reaches it ``late`` seconds after Redis ran
        the tick's commands (a slow network, a paused process)."""
        if i >= self.n or i not in self._live():
            return
        keeper = self.fleets[i].keeper
        keep = keeper.keep

        def slow(*args: Any) -> Any:
            found = keep(*args)
            self.clock.now += late
            return found

        with mock.patch.object(keeper, "keep", slow):
            self.fleets[i].tick()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.5, 7.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(i=st.integers(0, 2), k=st.integers(0, 4))
    def send(self, i: int, k: int) -> None:
        """Process ``i`` attempts a send for key ``k`` (frozen or dead: it cannot)."""
        if i >= self.n or i not in self._live() or k >= len(self.keys):
            return
        kid = key_id(self.keys[k])
        served = self.fleets[i].served.get(kid)
        if served is None or served.worker.lease.remaining() <= 0:
            return  # its loop runs only while the lease is its own
        try:
            served.worker._fence()
        except LeaseLost:
            return
        last = self.sends.get(kid)
        if last is not None and last[0] != i:
            assert self.clock.now >= last[1] + BUDGET_S, (
                f"process {i} sends for key {k} while process {last[0]}'s send of "
                f"{last[1]} may still run (now {self.clock.now})")
        self.sends[kid] = (i, self.clock.now)

    @rule(i=st.integers(0, 2))
    def kill(self, i: int) -> None:
        if i < self.n and len(self.dead) < self.n - 1:
            self.dead.add(i)

    @rule(i=st.integers(0, 2))
    def restart(self, i: int) -> None:
        if i < self.n and i in self.dead:
            self.dead.discard(i)
            self.frozen.discard(i)
            self.fleets[i] = self._fleet(i)

    @rule(i=st.integers(0, 2))
    def freeze(self, i: int) -> None:
        if i < self.n:
            self.frozen.add(i)

    @rule(i=st.integers(0, 2))
    def thaw(self, i: int) -> None:
        self.frozen.discard(i)

    @rule(i=st.integers(0, 2), k=st.integers(0, 4))
    def give_up(self, i: int, k: int) -> None:
        """SIGHUP with key ``k`` gone from the process's keys, then back."""
        if i < self.n and i in self._live() and k < len(self.keys):
            fleet = self.fleets[i]
            fleet.set_keys([key for n, key in enumerate(self.keys) if n != k])
            fleet.set_keys(self.keys)

    @rule()
    def settle(self) -> None:
        """The live processes tick for a TTL and more: every key is then served."""
        live = self._live()
        if not live:
            return
        fleet = self.fleets[live[0]]
        for _ in range(int((TTL_S + 2 * fleet.grace_s) / fleet.tick_s) + 3):
            self.clock.now += fleet.tick_s
            for i in live:
                self.fleets[i].tick()
        for key in self.keys:
            holder = self.redis.get(NAMES.lease(key_id(key)))
            owners = [i for i in live if self.fleets[i].worker_id == holder]
            assert owners, f"key {key_id(key)} is held by {holder}, no live process"
            assert self.fleets[owners[0]].served[key_id(key)].worker.lease.remaining() > 0

    # ---- invariants ----------------------------------------------------------------

    @invariant()
    def one_believer_per_key(self) -> None:
        if not hasattr(self, "fleets"):
            return
        for key in self.keys:
            kid = key_id(key)
            believers = [i for i, fleet in enumerate(self.fleets) if i not in self.dead
                         and kid in fleet.served
                         and fleet.served[kid].worker.lease.remaining() > 0]
            assert len(believers) <= 1, f"processes {believers} all hold key {kid}"


    @invariant()
    def belief_never_outlasts_the_lease(self) -> None:
        """What a process believes is its own is its own in Redis, for at least as long
        (Redis's clock and the processes' move together here)."""
        if not hasattr(self, "fleets"):
            return
        for i, fleet in enumerate(self.fleets):
            if i in self.dead:
                continue
            for kid, served in fleet.served.items():
                left = served.worker.lease.remaining()
                if left > 0:
                    assert self.redis.get(NAMES.lease(kid)) == fleet.worker_id
                    assert self.redis.pttl(NAMES.lease(kid)) >= left * 1000 - 1, (
                        f"process {i} believes key {kid} its own for {left}s, Redis for "
                        f"{self.redis.pttl(NAMES.lease(kid))}ms")


TestFleetMachine = FleetMachine.TestCase
TestFleetMachine.settings = hypothesis_settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_the_model_catches_a_fleet_that_takes_leases_it_does_not_hold() -> None:
    """The machine can fail: a KEEP that takes every lease, held or not, is caught."""
    import pytest

    from worker import keeper

    broken = keeper.KEEP.replace("elseif not holder then", "else")
    with mock.patch.object(keeper, "KEEP", broken), \
            pytest.raises((AssertionError, ExceptionGroup)) as caught:
        TestFleetMachine("runTest").runTest()
    if isinstance(caught.value, ExceptionGroup):  # several failures (hypothesis reports all)
        assert caught.value.subgroup(AssertionError) is not None
