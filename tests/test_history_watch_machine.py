"""The self-check's history-lost alarm as a state machine (hypothesis): whatever the lost
count does between checks (grows, stays, begins again from 0 on a new Redis) and however
far apart the checks are, the condition holds exactly while the count grew within
LOST_QUIET_S of the check that saw it grow."""

from __future__ import annotations

from pathlib import Path

import fakeredis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from relay.housekeeping import selfcheck
from relay.names import Names
from relay.routes.config import load
from relay.settings import Settings
from tests.conftest import make_key

NAMES = Names("pdr")


class LostAlarm(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        import tempfile

        home = Path(tempfile.mkdtemp())
        (home / "keys.txt").write_text(f"{make_key()} ops\n")
        (home / "routes.yml").write_text("self_alert:\n  keys: [ops]\n  for_s: 0\n")
        self.settings = Settings.from_env({
            "RELAY_KEYS_FILE": str(home / "keys.txt"),
            "RELAY_ROUTES_FILE": str(home / "routes.yml"),
            "RELAY_HISTORY_DSN": "postgresql://u:pw@127.0.0.1:5432/db"})
        self.routes = load(self.settings.routes_file, self.settings.key_names)
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.now = 1_000_000.0
        self.lost = 0  # the model: the count, the count the last check saw, when it grew
        self.seen = 0
        self.grew_at: float | None = None

    @rule(n=st.integers(1, 50))
    def entries_lost(self, n: int) -> None:
        self.lost += n
        self.fake.hincrby(NAMES.history_export, "lost", n)

    @rule()
    def redis_begins_again(self) -> None:
        self.lost = 0
        self.fake.hdel(NAMES.history_export, "lost")

    @rule(seconds=st.sampled_from([1, 30, 300, selfcheck.LOST_QUIET_S - 1,
                                   selfcheck.LOST_QUIET_S + 1, 5000]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def check(self) -> None:
        found = selfcheck.conditions(self.fake, NAMES, self.settings, self.routes,
                                     now=self.now)
        if self.lost > self.seen:
            self.grew_at = self.now
        self.seen = self.lost
        expected = bool(self.lost) and self.grew_at is not None and \
            self.now - self.grew_at < selfcheck.LOST_QUIET_S
        assert ("history-lost" in {c.id for c in found}) == expected
        if expected:
            [lost] = [c for c in found if c.id == "history-lost"]
            assert f"{self.lost} history entries lost" in lost.summary


LostAlarm.TestCase.settings = settings(max_examples=150, stateful_step_count=30,
                                       deadline=None)
TestLostAlarm = LostAlarm.TestCase
