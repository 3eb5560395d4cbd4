"""Gatherings (relay.channels.gather) as a hypothesis state machine: notices and whole
digests parked in several channels' gatherings, ``digest_first`` openings, a crash's
replays (marks), the clock moving, due gatherings taken (some still muted: postponed),
and dispatchers dying after taking digests or after making their jobs, recovered by the
next. Checked against a model after every step: every parked notice is counted in
exactly one digest (none twice: RQ refuses a job id it has), counts exact, lines the
first ``LINES_KEPT`` in order, due times as promised, and Redis's size bounded. On
fakeredis and, fewer runs, a real redis-server (its Lua and cjson)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import fakeredis
import pytest
import redis
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relay.channels.digest import LINES_KEPT, Digest, Line
from relay.channels.gather import SEP, Gatherings, reason_of
from relay.channels.notice import Notice
from relay.names import Names
from tests.heartbeat_fixtures import Clock, real_redis

__all__ = ["real_redis"]  # a fixture
NAMES = Names("pgm")
CHANNELS = ("a", "b")
GROUPS = ("digest", "muted:nights", "breaker")
SEVERITIES = ("critical", "error", "warning", "info", "odd")
ACTIONS = ("trigger", "acknowledge", "resolve", "change")
LIMIT_MAX = 4  # gatherings taken at most per flush
LIMITS = st.integers(1, LIMIT_MAX)
REAL: list[redis.Redis] = []


@pytest.fixture(scope="module", autouse=True)
def _real(real_redis: redis.Redis) -> Iterator[None]:
    REAL.append(real_redis)
    yield
    REAL.clear()


@dataclass
class Open:
    """The model of one open gathering."""

    due: int
    again: int = 0
    total: int = 0
    severities: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)  # dedup keys
    since: int | None = None
    until: int | None = None
    test: bool = False

    def add(self, total: int, severities: Counter[str], states: Counter[str],
            lines: list[str], since: int, until: int, test: bool) -> None:
        if total <= 0:
            return
        self.total += total
        self.severities.update(severities)
        self.states.update(states)
        self.lines += lines[:LINES_KEPT - len(self.lines)]
        self.since = since if self.since is None else min(self.since, since)
        self.until = until if self.until is None else max(self.until, until)
        self.test = self.test or test


def kind(severity: str) -> str:
    return severity if severity in SEVERITIES[:4] else "other"


class GatherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = self.make_client()
        self.clock = Clock()
        self.gatherings = Gatherings(self.client, NAMES, self.clock)
        self.open: dict[tuple[str, str], Open] = {}
        self.parked: Counter[tuple[str, str]] = Counter()  # notices counted into gatherings
        self.jobs: dict[tuple[str, str], Digest] = {}  # RQ: one job per (channel, id)
        self.marks: dict[str, tuple[tuple[object, ...], bool]] = {}
        self.mute_end = 0  # ms: a muted: gathering due before then waits until then
        self.serial = 0
        self.crashed = False  # a dispatcher died: the next one recovers before it flushes

    def make_client(self) -> redis.Redis:
        return fakeredis.FakeRedis(decode_responses=True)

    def teardown(self) -> None:
        self.client.flushall()

    def now(self) -> int:
        return int(self.clock() * 1000)

    def notice(self, severity: str, action: str, skew: int, test: bool = False) -> Notice:
        self.serial += 1
        return Notice(id=f"n{self.serial}", action=action, event={
            "dedup_key": f"k{self.serial}", "payload": {"summary": "s", "severity": severity}},
            accepted_ms=self.now() + skew, severity=severity, test=test)

    # parking

    def model_park(self, where: tuple[str, str], due: int, again: int, item: Notice | Digest,
                   first: bool) -> bool:
        found = self.open.get(where)
        if found is None:
            self.open[where] = found = Open(due=due, again=again)
            if first:
                return False
        elif due < found.due:
            found.due = due
        if isinstance(item, Notice):
            found.add(1, Counter([kind(item.severity)]), Counter([item.state]),
                      [str(item.event["dedup_key"])], item.accepted_ms, item.accepted_ms,
                      item.test)
            self.parked[where] += 1
        else:
            found.add(item.total, Counter({kind(k): v for k, v in item.by_severity.items()}),
                      Counter(item.by_state), [line.dedup_key for line in item.lines],
                      item.since_ms, item.until_ms, item.test)
            self.parked[where] += item.total
        return True

    @rule(channel=st.sampled_from(CHANNELS), group=st.sampled_from(GROUPS),
          severity=st.sampled_from(SEVERITIES), action=st.sampled_from(ACTIONS),
          due_in=st.integers(-1000, 10_000), skew=st.integers(-5000, 5000),
          test=st.booleans(), marked=st.booleans(), times=st.integers(1, 60))
    def park(self, channel: str, group: str, severity: str, action: str, due_in: int,
             skew: int, test: bool, marked: bool, times: int) -> None:
        for _ in range(times):  # a burst: lines past LINES_KEPT are counted, not kept
            item = self.notice(severity, action, skew, test)
            due = self.now() + due_in
            mark = f"{channel}{SEP}{item.id}" if marked else ""
            expected = self.model_park((channel, group), due, 0, item, first=False)
            assert self.gatherings.park(channel, group, item, due, mark) is expected
            if mark:
                self.marks[mark] = ((channel, group, item, due), expected)

    @rule(channel=st.sampled_from(CHANNELS), severity=st.sampled_from(SEVERITIES),
          period=st.integers(1, 5000), marked=st.booleans())
    def first(self, channel: str, severity: str, period: int, marked: bool) -> None:
        item = self.notice(severity, "trigger", 0)
        due = self.now() + period
        mark = f"{channel}{SEP}{item.id}" if marked else ""
        expected = self.model_park((channel, "digest"), due, period, item, first=True)
        assert self.gatherings.first(channel, "digest", item, due, period, mark) is expected
        if mark:
            self.marks[mark] = ((channel, "digest", item, due, period), expected)

    @rule(channel=st.sampled_from(CHANNELS), group=st.sampled_from(GROUPS),
          lines=st.integers(0, LINES_KEPT), more=st.integers(0, 500),
          severity=st.sampled_from(SEVERITIES), due_in=st.integers(-1000, 10_000))
    def park_digest(self, channel: str, group: str, lines: int, more: int, severity: str,
                    due_in: int) -> None:
        items = [self.notice(severity, "trigger", 0) for _ in range(lines)]
        total = lines + more
        held = Digest(id="held", channel=channel, reason=reason_of(group),
                      since_ms=self.now() - 10, until_ms=self.now() + 10, total=total,
                      by_severity={severity: total} if total else {},
                      by_state={"triggered": total} if total else {},
                      lines=tuple(Line.of(item) for item in items))
        due = self.now() + due_in
        expected = self.model_park((channel, group), due, 0, held, first=False)
        assert self.gatherings.park(channel, group, held, due) is expected

    @precondition(lambda self: self.marks)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A crashed dispatcher's successor takes its entries over: it parks them again."""
        mark = data.draw(st.sampled_from(sorted(self.marks)))
        args, expected = self.marks[mark]
        if len(args) == 5:
            channel, group, item, due, period = args
            found = self.gatherings.first(channel, group, item, due, period, mark)  # type: ignore[arg-type]
        else:
            channel, group, item, due = args
            found = self.gatherings.park(channel, group, item, due, mark)  # type: ignore[arg-type]
        assert found is expected

    @rule()
    def unmark(self) -> None:
        self.gatherings.unmark()
        self.marks.clear()

    # time and taking

    @rule(ms=st.integers(0, 8000))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    @rule(until_in=st.integers(-1000, 20_000))
    def mute(self, until_in: int) -> None:
        self.mute_end = self.now() + until_in

    @precondition(lambda self: not self.crashed)
    @rule(limit=LIMITS, crash=st.sampled_from(["none", "after_take", "after_jobs"]))
    def flush(self, limit: int, crash: str) -> None:
        now = self.now()
        expected = self.model_take(now, limit)

        def hold(channel: str, group: str) -> int | None:
            return self.mute_end if group.startswith("muted:") else None

        taken = self.gatherings.take_due(now, limit, hold)
        assert sorted(map(shape, taken), key=repr) == sorted(expected, key=repr)
        self.crashed = crash != "none"
        if crash == "after_take":
            return  # the next dispatcher finds them taken
        for digest in self.gatherings.taken():
            self.jobs.setdefault((digest.channel, digest.id), digest)
        if crash == "none":
            self.gatherings.forget(self.gatherings.taken())

    @rule()
    def recover(self) -> None:
        """The next dispatcher, on gaining its lease: makes the taken digests' jobs (RQ
        refuses the ones it has), then forgets them."""
        taken = self.gatherings.taken()
        for digest in taken:
            self.jobs.setdefault((digest.channel, digest.id), digest)
        self.gatherings.forget(taken)
        self.crashed = False

    def model_take(self, now: int, limit: int) -> list[tuple[object, ...]]:
        due = sorted((found.due, f"{where[0]}{SEP}{where[1]}", where)
                     for where, found in self.open.items() if found.due <= now)[:limit]
        digests = []
        for _, _, where in due:
            found = self.open[where]
            if where[1].startswith("muted:") and self.mute_end > now:
                found.due = self.mute_end
                continue
            del self.open[where]
            if found.total > 0:
                digests.append((where[0], reason_of(where[1]), found.total,
                                dict(found.severities), dict(found.states),
                                tuple(found.lines), found.since, found.until, found.test))
                if found.again > 0:
                    self.open[where] = Open(due=now + found.again, again=found.again)
        return digests

    # what must hold after every step

    @invariant()
    def every_notice_is_counted_once(self) -> None:
        counted: Counter[tuple[str, str]] = Counter()
        for digest in self.jobs.values():
            counted[digest.channel, digest.reason] += digest.total
        made = {(channel, digest_id) for channel, digest_id in self.jobs}
        for digest in self.gatherings.taken():
            if (digest.channel, digest.id) not in made:
                counted[digest.channel, digest.reason] += digest.total
        for where, found in self.open.items():
            counted[where[0], reason_of(where[1])] += found.total
        parked: Counter[tuple[str, str]] = Counter()
        for (channel, group), n in self.parked.items():
            parked[channel, reason_of(group)] += n
        assert +counted == +parked

    @invariant()
    def redis_holds_what_the_model_holds(self) -> None:
        due = dict(self.client.zrange(NAMES.gatherings_due, 0, -1, withscores=True))
        assert {member: int(score) for member, score in due.items()} == {
            f"{c}{SEP}{g}": found.due for (c, g), found in self.open.items()}
        for (channel, group), found in self.open.items():
            fields = self.client.hgetall(NAMES.gathering(channel, group))
            assert int(fields["total"]) == found.total and int(fields["due"]) == found.due
            kept = self.client.lrange(NAMES.gathered(channel, group), 0, -1)
            assert len(kept) == len(found.lines) <= LINES_KEPT
            assert len(fields) <= 8 + 5 + 7  # its own fields, 5 severities, 7 states

    @invariant()
    def memory_is_bounded(self) -> None:
        keys = set(self.client.keys("pgm:*"))
        extra = keys - {NAMES.gathering(c, g) for c, g in self.open} - {
            NAMES.gathered(c, g) for c, g in self.open}
        assert extra <= {NAMES.gatherings_due, NAMES.digests_taken, NAMES.gathering_marks,
                         NAMES.channel_stats}, extra
        assert self.client.hlen(NAMES.digests_taken) <= LIMIT_MAX
        assert self.client.hlen(NAMES.gathering_marks) == len(self.marks)


def shape(digest: Digest) -> tuple[object, ...]:
    return (digest.channel, digest.reason, digest.total, digest.by_severity, digest.by_state,
            tuple(line.dedup_key for line in digest.lines), digest.since_ms, digest.until_ms,
            digest.test)


TestGatherMachine = GatherMachine.TestCase
TestGatherMachine.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=40, deadline=None)


class RealGatherMachine(GatherMachine):
    """The same on a real redis-server (its Lua and cjson), fewer runs."""

    def make_client(self) -> redis.Redis:
        REAL[0].flushall()
        return REAL[0]

    def teardown(self) -> None:
        pass


TestRealGatherMachine = RealGatherMachine.TestCase
TestRealGatherMachine.settings = hypothesis_settings(
    max_examples=30, stateful_step_count=40, deadline=None)
