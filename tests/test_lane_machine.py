"""Storm mode's lane machinery as a state machine (issue 24): whatever arrives, whoever
takes, whatever is purged, merged, pruned or crashed, and in whichever mode each worker
runs, every incident's events reach PagerDuty in the order accepted, each once or merged
into a later trigger of its incident, a purged event never, and once all is drained the
key's counters are back at 0.

Real workers (worker/delivery.py ``Worker.step``: take, send, FINISH) of every storm
mode taking turns on fakeredis with Lua, a PagerDuty stub that can crash the worker
before or after it sends, lapsed holders' late takes, sorting alone, prunes, and
``pd-relay queue purge`` itself (relay/queues.py: PURGE on the arrival list, PURGE_LANE
on a lane) removing chosen events of any kind, or matching ones, or what it read before
things moved. Sorting and gaps are taken in slices of 3 and 2 (SORTED_PER_CALL,
GAPS_PER_CALL, so MORE_GAPS happens). Nothing here depends on which lane is served
first.

How the model counts:

- Every accepted event has a number ``x`` (in the event, so PagerDuty's body names it)
  and an accepted time ``t0 + x`` (so a merged trigger's ``first`` names its first). A
  stored or sent trigger standing for ``m`` repeats covers its incident's ``m`` events
  accepted from that first to itself and not purged before; all must be triggers.
- Delivered: a body PagerDuty got (its cover), or an unreadable event dead-lettered.
  Each accepted event is delivered once, or purged, never both, and an incident's
  covers arrive in increasing order.
- A crash after the send and before FINISH leaves the event in flight, and the next
  holder sends it again: that one re-send of the in-flight event (same body) is at
  least once by design and is counted apart (``resends``), never as a second delivery.
  Any other repeat is a failure. After any crash, the next send is the event it left.
- The key's ``coalesced`` counts every merge: what each event sent, purged or waiting
  stands for, less one.
- After every step: the key's ``bytes`` equal the bytes of every event in the arrival
  list, the lanes and in flight; ``laned`` the events in the lanes less the arrival
  list's gaps; each incident's pending entry counts its events in the lanes, all in the
  entry's lane, and its place names its newest there (or a gap, or past the lane's end
  where a purge took gaps off); nothing else has a count; waiting events of an
  incident (in flight, lanes, arrival) are in acceptance order after what was sent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any
from unittest import mock

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import relay.queues
import worker.delivery
import worker.lanes
from relay.history import iso
from relay.keys import key_id, new_key
from relay.names import Names
from relay.routes.matchers import parse
from relay.settings import Settings
from relay.store import Record, is_gap
from tests.test_lanes import prune
from worker.delivery import Worker
from worker.lanes import Lanes

NAMES = Names()
INCIDENTS = ("i0", "i1", "i2", "i3")
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "trigger", "trigger", "acknowledge", "resolve")
# each mode's name: RELAY_STORM_MODE and RELAY_STORM_AFTER_S (events are accepted 30 s
# before the machine starts: backlog merges, young-backlog does not yet)
MODES = {"off": ("off", 10.0), "always": ("always", 10.0), "backlog": ("backlog", 10.0),
         "young-backlog": ("backlog", 3600.0)}
EVENTS = st.tuples(st.sampled_from(INCIDENTS), st.sampled_from(ACTIONS),
                   st.sampled_from(SEVERITIES))  # an alert: its incident, action, severity
ODD = ("unreadable", "change", "change with a dedup_key", "alert without a dedup_key")


class Crash(BaseException):
    """The worker's process dies where it stands (as a kill would)."""


class Stuck(AssertionError):
    """The worker found nothing to take while events wait (it would block on BLMOVE)."""


class Client(fakeredis.FakeRedis):
    def blmove(self, *args: Any, **kwargs: Any) -> Any:
        raise Stuck("the worker found nothing to take while events wait")


class PagerDutyStub:
    """Takes every event; ``crash`` kills the sending worker before or after the send."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.crash: str | None = None

    def send(self, kind: str, body: bytes) -> str:
        if self.crash == "before":
            raise Crash
        self.bodies.append(json.loads(body))
        if self.crash == "after":
            raise Crash
        return '{"status":"success"}'


@dataclass(frozen=True)
class Accepted:
    incident: str | None  # the dedup_key of an alert; None: no incident (change, odd)
    action: str  # trigger, acknowledge, resolve, change or unreadable


def digest(dedup_key: str) -> str:
    """The pending hash's field of an incident (worker/lanes.py INCIDENTS ``digest``)."""
    a = b = 0
    for c in dedup_key.encode():
        a, b = (a * 31 + c) % 4294967291, (b * 37 + c) % 4294967279
    return f"{a:08x}{b:08x}"


def incident_of(raw: str) -> str | None:
    """The incident TAKE counts a stored event in (INCIDENTS ``read``), if any."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("k") != "alert":
        return None
    event = record.get("e")
    if not isinstance(event, dict):
        return None
    dedup_key = event.get("dedup_key")
    return dedup_key if isinstance(dedup_key, str) else None


class LaneMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fake = Client(decode_responses=True)
        self.key = new_key()
        self.kid = key_id(self.key)
        self.settings = Settings(
            routing_keys=(self.key,), lease_ttl_s=3600, connect_timeout_s=0.2,
            read_timeout_s=0.5, rate_per_min=10**6, history_max_entries=0, retry_base_s=0.01)
        self.pd = PagerDutyStub()
        self.made = 0
        self.modes = ["always"] * 3
        self.workers = [self._worker("always") for _ in range(3)]
        self.holder: int | None = None
        seconds, micros = self.fake.time()
        self.t0 = int(seconds) * 1000 + int(micros) // 1000 - 30_000
        self.accepted: list[Accepted] = []
        self.by_ms: dict[int, int] = {}
        self.by_iso: dict[str, int] = {}
        self.sent: set[int] = set()  # covered by a body PagerDuty got
        self.dead: set[int] = set()  # dead-lettered (unreadable)
        self.purged: set[int] = set()
        self.last: dict[str, int] = {}  # each incident's newest event sent
        self.bodies = 0  # PagerDuty's bodies looked at
        self.letters: set[str] = set()  # dead letters looked at
        self.unfinished: tuple[int, dict[str, Any]] | None = None  # sent, not finished
        self.crashed: int | None = None  # the event a crash left in flight
        self.resends = self.crashes_after = 0
        self.merges = 0  # repeats merged into what was sent or purged
        self.stale: list[tuple[str, int, str]] = []  # what a purge read, and where
        self.patches: list[Any] = [
            mock.patch.object(worker.lanes, "SORTED_PER_CALL", 3),  # sorting in slices
            mock.patch.object(worker.delivery, "SORTED_PER_CALL", 3),
            mock.patch.object(worker.lanes, "GAPS_PER_CALL", 2),  # MORE_GAPS, taken again
            mock.patch.object(relay.queues, "connect", lambda *_, **__: self.fake),
        ]
        for patch in self.patches:
            patch.start()

    # ---- helpers -------------------------------------------------------------------

    def _worker(self, mode: str) -> Worker:
        storm_mode, after_s = MODES[mode]
        self.made += 1
        made = Worker(replace(self.settings, storm_mode=storm_mode, storm_after_s=after_s),
                      self.key, self.fake, pagerduty=self.pd,  # type: ignore[arg-type]
                      sleep=self._no_sleep, worker_id=f"w{self.made}")
        made.lease.clock = lambda: 0.0  # its lease outlasts any send, on its own clock
        return made

    @staticmethod
    def _no_sleep(seconds: float) -> None:
        raise AssertionError(f"a worker would sleep {seconds}s")

    def _lists(self) -> tuple[list[str], list[list[str]], list[str]]:
        """In flight, the four lanes, the arrival list."""
        return (self._range(NAMES.inflight(self.kid)),
                [self._range(name) for name in NAMES.lanes(self.kid)],
                self._range(NAMES.queue(self.kid)))

    def _range(self, name: str) -> list[str]:
        return [str(raw) for raw in self.fake.lrange(name, 0, -1)]

    def _hash(self, name: str) -> dict[str, str]:
        return {str(field): str(value) for field, value in self.fake.hgetall(name).items()}

    def _waiting(self) -> list[str]:
        """Every waiting event (arrival list and lanes, gaps aside), as purge sees them."""
        _, lanes, arrival = self._lists()
        return [raw for raws in [*lanes, arrival] for raw in raws if not is_gap(raw)]

    def _busy(self) -> bool:
        return bool(self.fake.llen(NAMES.inflight(self.kid))) or bool(self._waiting())

    def _stat(self, name: str) -> int:
        return int(self.fake.hget(NAMES.stats(self.kid), name) or 0)

    def covers(self, raw: str) -> list[int]:
        """The accepted events a stored event stands for, in order."""
        if raw.startswith("not json "):
            return [int(raw.rsplit(" ", 1)[1])]
        record = Record.decode(raw)
        newest = int(record.event["x"])
        if record.repeats == 1:
            return [newest]
        first = self.by_ms[record.first_ms]
        incident = self.accepted[newest].incident
        covered = [n for n in range(first, newest + 1)
                   if self.accepted[n].incident == incident and n not in self.purged]
        assert len(covered) == record.repeats, (raw, covered)
        assert all(self.accepted[n].action == "trigger" for n in covered), (raw, covered)
        return covered

    def _arrive(self, kind: str, event: dict[str, Any] | None, incident: str | None,
                action: str) -> str:
        n = len(self.accepted)
        raw = (f"not json {n}" if event is None else
               Record(kind, dict(event, x=n), self.t0 + n, f"id{n}").encode())
        self.accepted.append(Accepted(incident, action))
        self.by_ms[self.t0 + n] = n
        self.by_iso[iso(self.t0 + n)] = n
        return raw

    def _store(self, raws: list[str]) -> None:
        """What ENQUEUE does to the key's queue: append, count the bytes."""
        with self.fake.pipeline() as pipe:
            pipe.rpush(NAMES.queue(self.kid), *raws)
            pipe.hincrby(NAMES.stats(self.kid), "bytes", sum(len(r.encode()) for r in raws))
            pipe.execute()

    def _purge(self, asked: list[str], matchers: list[str] | None = None,
               reading: list[tuple[str, int, str]] | None = None) -> None:
        """``pd-relay queue purge key-1 --yes`` (relay/queues.py ``command``): with these
        matchers; or, with ``matchers`` None, of exactly the events ``asked`` (its
        matching replaced by that); or of what it read earlier (``reading``: each event
        and the list it was read in, since taken, merged or moved up, some of them).
        What it removed (the waiting events before less after) is purged."""
        before = self._waiting()
        args = argparse.Namespace(action="purge", key="key-1", match=matchers or [],
                                  all=not matchers, yes=True)
        with contextlib.ExitStack() as stack:
            if matchers is None:
                stack.enter_context(mock.patch.object(
                    relay.queues, "_matches", lambda raw, _: raw in asked))
            if reading is not None:
                stack.enter_context(mock.patch.object(
                    relay.queues, "_queued", lambda *_: iter(reading)))
            said = stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            assert relay.queues.command(self.settings, args) == 0
        removed = Counter(before) - Counter(self._waiting())
        assert f"removed {removed.total()} queued" in said.getvalue(), said.getvalue()
        assert not removed - Counter(asked), "a purge removed what it was not asked to"
        if reading is None:
            assert removed == Counter(asked), "a purge left what it was asked to remove"
        for raw in removed.elements():
            covered = self.covers(raw)
            assert not set(covered) & (self.sent | self.purged | self.dead)
            self.purged.update(covered)
            self.merges += len(covered) - 1

    def _hold(self, n: int) -> Worker:
        """Worker ``n`` holds the lease: the holder before lets go of it."""
        if self.holder != n:
            if self.holder is not None:
                self.workers[self.holder].lease.release()
            assert self.workers[n].lease.acquire()
            self.holder = n
        return self.workers[n]

    def _crashed(self, n: int) -> None:
        """Worker ``n`` is gone; its lease lapses; a new process starts in its place."""
        inflight = self._range(NAMES.inflight(self.kid))
        assert inflight, "a crash lost the event in flight"
        self.crashed = self.covers(inflight[0])[-1]
        self.fake.delete(NAMES.lease(self.kid))
        self.workers[n] = self._worker(self.modes[n])
        self.holder = None

    def _delivered(self) -> None:
        """Account for what PagerDuty got and what was dead-lettered since last time."""
        for body in self.pd.bodies[self.bodies:]:
            newest = int(body["x"])
            if self.crashed is not None:
                assert newest == self.crashed, "after a crash, its event in flight goes first"
                self.crashed = None
            if self.unfinished is not None and self.unfinished[0] == newest:
                assert body == self.unfinished[1]
                self.resends, self.unfinished = self.resends + 1, None
                continue
            assert self.unfinished is None, "the event sent before a crash was not sent again"
            details = (body.get("payload") or {}).get("custom_details") or {}
            merged = details.get("pd_relay")
            if merged:
                first = self.by_iso[merged["first"]]
                assert merged["last"] == iso(self.t0 + newest)
                incident = self.accepted[newest].incident
                covered = [n for n in range(first, newest + 1)
                           if self.accepted[n].incident == incident and n not in self.purged]
                assert len(covered) == merged["coalesced"], (body, covered)
                assert all(self.accepted[n].action == "trigger" for n in covered)
            else:
                covered = [newest]
            self.merges += len(covered) - 1
            self._count(covered)
        self.bodies = len(self.pd.bodies)
        letters = self._hash(NAMES.dead)
        for letter_id, letter in letters.items():
            if letter_id not in self.letters:
                self.letters.add(letter_id)
                covered = self.covers(json.loads(letter)["raw"])
                assert all(self.accepted[n].action == "unreadable" for n in covered)
                self._count(covered, dead=True)

    def _count(self, covered: list[int], dead: bool = False) -> None:
        for n in covered:
            assert n not in self.purged, f"event {n} was purged, then delivered"
            assert n not in self.sent | self.dead, f"event {n} delivered twice"
        (self.dead if dead else self.sent).update(covered)
        incident = self.accepted[covered[0]].incident
        if incident is not None:
            assert covered[0] > self.last.get(incident, -1), (
                f"{incident}: event {covered[0]} after {self.last.get(incident)}")
            self.last[incident] = covered[-1]

    # ---- rules ---------------------------------------------------------------------

    @initialize(modes=st.lists(st.sampled_from(sorted(MODES)), min_size=3, max_size=3),
                backlog=st.lists(EVENTS, max_size=30))
    def start(self, modes: list[str], backlog: list[tuple[str, str, str]]) -> None:
        """The three workers start, each in its storm mode, with a backlog waiting."""
        self.modes = modes
        self.workers = [self._worker(mode) for mode in modes]
        if backlog:
            self.arrive(backlog)

    @rule(batch=st.lists(EVENTS, min_size=1, max_size=6))
    def arrive(self, batch: list[tuple[str, str, str]]) -> None:
        """A request's events, stored together (ENQUEUE)."""
        raws = []
        for incident, action, severity in batch:
            event: dict[str, Any] = {"event_action": action, "dedup_key": incident}
            if action == "trigger":
                event["payload"] = {"summary": incident, "source": "h", "severity": severity}
            raws.append(self._arrive("alert", event, incident, action))
        self._store(raws)

    @rule(kind=st.sampled_from(ODD), severity=st.sampled_from(SEVERITIES))
    def arrive_odd(self, kind: str, severity: str) -> None:
        """An event of no incident: unreadable, a change event (one with a dedup_key,
        which the sorter never counts), an alert without a dedup_key."""
        payload = {"summary": "deploy", "source": "ci", "severity": severity}
        if kind == "unreadable":
            raw = self._arrive(kind, None, None, "unreadable")
        elif kind.startswith("change"):
            event: dict[str, Any] = {"payload": payload}
            if kind == "change with a dedup_key":
                event["dedup_key"] = "i1"
            raw = self._arrive("change", event, None, "change")
        else:
            raw = self._arrive("alert", {"event_action": "trigger", "payload": payload}, None,
                               "trigger")
        self._store([raw])

    @rule(n=st.integers(0, 2), times=st.integers(1, 3),
          crash=st.sampled_from([None, None, "before", "after"]))
    def step(self, n: int, times: int, crash: str | None) -> None:
        """Worker ``n`` (now the holder) delivers the event in flight, or takes the next
        one and delivers it, ``times`` over while events wait; the last time it may die
        before or after sending."""
        for turn in range(times):
            if not self._busy():  # (else it would wait for an arrival)
                break
            self._step(n, crash if turn == times - 1 else None)
            if self.holder is None:
                break

    def _step(self, n: int, crash: str | None) -> None:
        holder = self._hold(n)
        self.pd.crash = crash
        sent = len(self.pd.bodies)
        try:
            assert holder.step()
        except Crash:
            self._delivered()
            if crash == "after":
                assert len(self.pd.bodies) == sent + 1
                body = self.pd.bodies[-1]
                self.crashes_after += 1
                self.unfinished = (int(body["x"]), body)
            self._crashed(n)
            return
        finally:
            self.pd.crash = None
        self._delivered()

    @rule(n=st.integers(0, 2), only_sort=st.booleans())
    def take(self, n: int, only_sort: bool) -> None:
        """Worker ``n`` only sorts what arrived (the worker's loop for a big arrival); or
        takes as a lapsed holder may, late: the event goes in flight behind any there."""
        lanes = self.workers[n].lanes
        if only_sort:
            lanes.take(take=False)
        elif self.fake.llen(NAMES.inflight(self.kid)) < 3:
            while lanes.take().lane == worker.lanes.MORE_GAPS:
                pass

    @rule(data=st.data(), how=st.sampled_from(["one", "newest", "several"]))
    def purge(self, data: st.DataObject, how: str) -> None:
        """Purge one waiting event of any kind, wherever it waits; or the newest in a
        lane (its incident's newest: where its next trigger would merge); or several."""
        waiting = self._waiting()
        _, lanes, _ = self._lists()
        tails = [raws[-1] for raws in lanes if raws and not is_gap(raws[-1])]
        if how == "several" and len(waiting) > 1:
            self._purge(data.draw(st.lists(st.sampled_from(waiting), min_size=2, unique=True)))
        elif waiting:
            self._purge([data.draw(st.sampled_from(tails if how == "newest" and tails else
                                                   waiting))])

    @rule(matchers=st.sampled_from(
        [[f'dedup_key="{i}"', f'event_action="{a}"'] for i in INCIDENTS
         for a in ("trigger", "acknowledge", "resolve")]
        + [[f'dedup_key="{i}"', f'severity="{s}"'] for i in INCIDENTS for s in SEVERITIES]
        + [[f'dedup_key="{i}"'] for i in INCIDENTS] + [['severity="info"'], []]))
    def purge_matching(self, matchers: list[str]) -> None:
        """``--match ...`` (no matcher: ``--all``)."""
        parsed = [parse(matcher) for matcher in matchers]
        self._purge([raw for raw in self._waiting() if not matchers or (
            not raw.startswith("not json ")
            and all(m.holds(Record.decode(raw).event, {}) for m in parsed))], matchers)

    @rule(data=st.data())
    def purge_later(self, data: st.DataObject) -> None:
        """A purge reads what waits, and where; the next time it goes on, removing each
        event from the list it was read in: some have been taken, merged or moved up
        since, and stay as they are."""
        if self.stale:
            self._purge([raw for _, _, raw in self.stale], reading=self.stale)
            self.stale = []
            return
        seen = list(relay.queues._queued(self.fake, NAMES, self.kid))  # (list, place, raw)
        if seen:
            self.stale = data.draw(st.lists(st.sampled_from(seen), min_size=1, unique=True))

    @rule(n=st.integers(0, 2), mode=st.sampled_from(sorted(MODES)), every=st.booleans())
    def restart(self, n: int, mode: str, every: bool) -> None:
        """Worker ``n`` (or every worker) restarts in another storm mode: workers of
        different modes take turns during a rolling change."""
        for m in range(3) if every else [n]:
            if self.holder == m:
                self.workers[m].lease.release()
                self.holder = None
            self.workers[m], self.modes[m] = self._worker(mode), mode

    @rule(idle=st.booleans(), cap=st.booleans())
    def prune(self, idle: bool, cap: bool) -> None:
        """The worker's prune: with a time past every entry (``idle``) or before them, and
        with RELAY_INCIDENTS_MAX far above or below what the key keeps (``cap``)."""
        seconds, micros = self.fake.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        settings = replace(self.settings, incidents_max=1 if cap else 10**6)
        lanes = Lanes(self.fake, NAMES, self.kid, settings, "key-1")
        pending = NAMES.pending(self.kid)
        notes = self._hash(pending)
        idle_before = [f for f, v in notes.items() if not f.startswith("#") and v.split()[1] == "0"]
        gone = prune(lanes, now + 1 if idle else now - 3_600_000)
        forgets = idle or (cap and len(notes) > 1)
        assert gone == (len(idle_before) if forgets else 0)

    # ---- invariants ----------------------------------------------------------------

    @invariant()
    def counted(self) -> None:
        """The key's counters agree with what waits, and each incident waits in order in
        one lane, its pending entry counting it."""
        inflight, lanes, arrival = self._lists()
        everything = [raw for raw in [*inflight, *sum(lanes, []), *arrival] if not is_gap(raw)]
        assert self._stat("bytes") == sum(len(raw.encode()) for raw in everything)
        assert self._stat("laned") == sum(  # lane events, less the arrival list's gaps
            1 for raws in lanes for raw in raws if not is_gap(raw)) - arrival.count("")
        pending = self._hash(NAMES.pending(self.kid))
        waits: dict[str, list[tuple[int, int, str]]] = {}
        for lane, raws in enumerate(lanes):
            for at, raw in enumerate(raws):
                incident = incident_of(raw)
                if incident is not None and not is_gap(raw):
                    waits.setdefault(digest(incident), []).append((lane, at, raw))
        for field, note in pending.items():
            if field.startswith("#"):
                continue
            its_lane, count, place, kind = note.split()[:4]
            waiting = waits.pop(field, [])
            assert int(count) == len(waiting), (field, note, waiting)
            if not waiting:
                continue
            assert {lane for lane, _, _ in waiting} == {int(its_lane)}, (note, waiting)
            at = int(place) - int(pending.get(f"#{its_lane}", 0))
            held = lanes[int(its_lane)]
            assert at >= 0, (note, held)
            found = held[at] if at < len(held) else ""  # (a gap at the end: taken off)
            if not is_gap(found):
                assert found == waiting[-1][2], (note, found, waiting)
                assert (kind == "t") == (json.loads(found)["e"]["event_action"] == "trigger")
        assert not waits, f"events wait in the lanes without a pending entry: {waits}"
        # each accepted event: sent, dead-lettered, purged or waiting, exactly one of them
        where: Counter[int] = Counter()
        order: dict[str, list[int]] = {}
        merges = self.merges
        for at, raw in enumerate(everything):
            covered = self.covers(raw)
            if at == 0 and self.unfinished is not None and inflight and raw == inflight[0]:
                continue  # sent before a crash: counted as sent, sent again next
            where.update(covered)
            merges += len(covered) - 1
            incident = self.accepted[covered[0]].incident
            if incident is not None:
                order.setdefault(incident, []).extend(covered)
        assert self._stat("coalesced") == merges, "merges miscounted"
        where.update(self.sent | self.dead | self.purged)
        assert where == Counter(range(len(self.accepted))), "an event lost or doubled"
        assert len(self.sent) + len(self.dead) + len(self.purged) == len(
            self.sent | self.dead | self.purged)
        for incident, numbers in order.items():
            assert numbers == sorted(numbers), f"{incident} waits out of order: {numbers}"
            assert numbers[0] > self.last.get(incident, -1), (incident, numbers)

    def teardown(self) -> None:
        try:
            for _ in range(4 * len(self.accepted) + 10):
                if not self._busy():
                    break
                self._step(0, None)
                self.counted()
            assert not self._busy(), "the workers did not drain the key"
            assert self.unfinished is None and self.crashed is None
            assert self.sent | self.dead | self.purged == set(range(len(self.accepted)))
            assert self._stat("laned") == 0 and self._stat("bytes") == 0
            notes = self._hash(NAMES.pending(self.kid))
            assert all(note.split()[1] == "0" for field, note in notes.items()
                       if not field.startswith("#"))
            assert self.resends <= self.crashes_after
        finally:
            for patch in self.patches:
                patch.stop()


TestLaneMachine = LaneMachine.TestCase
TestLaneMachine.settings = hypothesis_settings(
    max_examples=100, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
