"""Maintenance notices as a state machine: windows added (some in force at once, some
already over) and expired early, time moving by jumps, two dispatchers taking turns.
Whatever the order, each window's channels hear each of its events at most once, in
order (added, started, then ended or expired early), never an end before the window's
end plus the grace, and, in the end, the end of every window seen before its end, with
every trigger counted for it."""

from __future__ import annotations

import fakeredis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relay.channels.maintenance import GRACE_S, Notices, held_field
from relay.channels.notice import Notice
from relay.channels.rqjobs import RESULT_TTL_S, job_id
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile
from relay.routes.windows import Windows

NAMES = Names("pdr")
TEAM = Channel("team", "webhook", url="https://hooks.example.org/t", maintenance=True)
ROUTES = RoutesFile(channels=(TEAM,))
ORDER = {"added": 0, "started": 1, "ended": 2, "expired early": 2}


class NoticesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_795_998_000.0
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.windows = Windows(self.fake, NAMES.maintenance, lambda: self.now)
        self.jobs: dict[tuple[str, float], Notice] = {}  # every job made, by id and time
        self.tellers = [Notices(self.fake, NAMES, {"team": TEAM}, lambda: ROUTES, self.put,
                                lambda: self.now) for _ in range(2)]
        self.ends: dict[str, float] = {}  # each window's end, as it stands
        self.held: dict[str, int] = {}
        self.seen_before_end: set[str] = set()

    def put(self, channel: Channel, notice: Notice) -> bool:
        """As RQ takes a job: a copy is refused while the first is kept (sent: for
        ``RESULT_TTL_S``), and made again after that."""
        made = job_id(notice.id, channel.name)
        kept = [at for (name, at) in self.jobs if name == made]
        if kept and self.now < max(kept) + RESULT_TTL_S:
            return False
        self.jobs[made, self.now] = notice
        return True

    def told(self, window: str) -> list[tuple[float, str, int | None]]:
        found = [(at, n.event["payload"]["custom_details"]) for (_, at), n in self.jobs.items()
                 if n.id.startswith(f"maintenance-{window}-")]
        return [(at, d["event"], d.get("held")) for at, d in sorted(found, key=lambda x: x[0])]

    @rule(start=st.floats(-100, 300), length=st.floats(1, 600))
    def add(self, start: float, length: float) -> None:
        window = self.windows.add("w", [], self.now + start, self.now + start + length)
        self.ends[window] = self.now + start + length
        self.held[window] = 0

    @precondition(lambda self: bool(self.ends))
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        window = data.draw(st.sampled_from(sorted(self.ends)))
        self.windows.expire(window)
        self.ends[window] = min(self.ends[window], self.now)

    @precondition(lambda self: bool(self.ends))
    @rule(data=st.data(), n=st.integers(1, 3))
    def suppress(self, data: st.DataObject, n: int) -> None:
        """Triggers held back by a window in force, as the ingress counts them."""
        window = data.draw(st.sampled_from(sorted(self.ends)))
        if self.now < self.ends[window]:
            self.fake.hincrby(NAMES.decisions, held_field(window), n)
            self.held[window] += n

    @rule(seconds=st.floats(0.1, 400))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule(which=st.integers(0, 1))
    def tick(self, which: int) -> None:
        for window, end in self.ends.items():
            if self.now < end:
                self.seen_before_end.add(window)
        self.tellers[which].tick()

    @invariant()
    def each_event_once_in_order(self) -> None:
        for window, end in self.ends.items():
            told = self.told(window)
            events = [event for _, event, _ in told]
            assert len(events) == len(set(events)), events
            assert [ORDER[e] for e in events] == sorted(ORDER[e] for e in events), events
            assert not {"ended", "expired early"} <= set(events), events
            for at, event, held in told:
                if ORDER[event] == 2:
                    assert at >= end + GRACE_S and held == self.held[window]

    def teardown(self) -> None:
        self.now += 1000 + GRACE_S
        self.tellers[0].tick()
        for window in self.seen_before_end:
            assert ORDER[self.told(window)[-1][1]] == 2, self.told(window)
        for window in set(self.ends) - self.seen_before_end:
            assert self.told(window) == []


TestNoticesMachine = NoticesMachine.TestCase
TestNoticesMachine.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
