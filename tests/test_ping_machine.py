"""Who may ping, as a hypothesis state machine over the real store (fakeredis): tokens
made and replaced, pings by token (current, replaced, another check's, made up) and by
API key (listed, not listed, unknown) to checks that exist or not. Every answer is the one
the model expects, and exactly the 200s left a ping behind."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import fakeredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relay.app import create_app
from relay.auth import digest, new_token
from relay.heartbeats.model import Check
from relay.heartbeats.store import KEEP_PINGS, Heartbeats
from relay.names import Names
from relay.settings import Settings
from tests.conftest import make_key
from tests.pingfakes import FakeChecks

CHECKS = {"open": None, "cron-only": ("cron",), "both": ("cron", "other")}
NAMES = (*CHECKS, "missing")
SOURCES = ("cron", "other", "stranger")  # stranger: a key no source holds
API_KEYS = {name: new_token()[0] for name in SOURCES}


class Pinging(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.redis = fakeredis.FakeRedis(decode_responses=True)
        self.store = Heartbeats(self.redis, Names())
        routes = Path(tempfile.mkdtemp()) / "routes.yml"
        routes.write_text("sources:\n" + "".join(
            f"  - name: {name}\n    api_keys: [\"{digest(API_KEYS[name])}\"]\n"
            for name in ("cron", "other")))
        routes.chmod(0o600)
        self.routes = routes
        checks = FakeChecks(*(Check(name, grace_s=60, period_s=60, sources=sources)
                              for name, sources in CHECKS.items()))
        base = Settings(routing_keys=(make_key(),), allow_anonymous=False)
        self.http = create_app(replace(base, routes_file=routes), client=self.redis,
                               checks=checks, pings=self.store).test_client()
        self.current: dict[str, str] = {}  # check -> its token now
        self.replaced: list[tuple[str, str]] = []
        self.pinged = dict.fromkeys(CHECKS, 0)

    def teardown(self) -> None:
        shutil.rmtree(self.routes.parent)

    @rule(name=st.sampled_from(tuple(CHECKS)))
    def new_token(self, name: str) -> None:
        if name in self.current:
            self.replaced.append((name, self.current[name]))
        self.current[name] = self.store.new_token(name)

    @rule(name=st.sampled_from(NAMES), which=st.sampled_from(["current", "replaced",
                                                              "other", "made-up"]))
    def ping_by_token(self, name: str, which: str) -> None:
        token = {"current": self.current.get(name),
                 "replaced": next((t for n, t in self.replaced if n == name), None),
                 "other": next((t for n, t in self.current.items() if n != name), None),
                 "made-up": "pdh_" + "m" * 43}[which]
        if token is None:
            return
        reply = self.http.get(f"/ping/{token}/{name}")
        expected = 200 if token == self.current.get(name) else 401
        assert reply.status_code == expected, (name, which, reply.json)
        if expected == 200:
            self.pinged[name] += 1

    @rule(name=st.sampled_from(NAMES), source=st.sampled_from(SOURCES),
          signal=st.sampled_from(["", "/start", "/fail", "/0", "/9"]))
    def ping_by_key(self, name: str, source: str, signal: str) -> None:
        reply = self.http.post(f"/ping/{name}{signal}", headers={"X-API-Key": API_KEYS[source]})
        if source == "stranger":
            expected = 401
        elif name == "missing":
            expected = 404
        else:
            allowed = CHECKS[name]
            expected = 200 if allowed is None or source in allowed else 403
        assert reply.status_code == expected, (name, source, reply.json)
        if expected == 200:
            self.pinged[name] += 1

    @invariant()
    def only_the_200s_left_pings(self) -> None:
        for name, count in self.pinged.items():  # the store keeps the last KEEP_PINGS
            assert len(self.store.recent_pings(name, 1000)) == min(count, KEEP_PINGS), name


Pinging.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                     suppress_health_check=list(HealthCheck))
test_who_may_ping = Pinging.TestCase
