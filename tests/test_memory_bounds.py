"""What the relay remembers per event or incident is bounded (promise 8): held incidents
(minted dedup_keys not at all), each key's remembered incidents, the history's bytes;
and a full Redis sheds history and channel notices before it refuses a page. On
fakeredis (ENQUEUE's and the history's Lua); tests/e2e/test_memory_bounds.py floods a
real Redis."""

from __future__ import annotations

from dataclasses import replace

import fakeredis
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relay.app import create_app
from relay.history import History, line
from relay.history.cap import ENTRY_OVERHEAD, MARKS
from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from relay.shed import Shed
from tests.conftest import UNIX

NAMES = Names("pdr")


def noise(count: int, named: bool, start: int = 0) -> list[dict[str, object]]:
    """Triggers the ``routed`` fixture's `noisy` route drops."""
    events: list[dict[str, object]] = []
    for n in range(start, start + count):
        event: dict[str, object] = {"event_action": "trigger", "payload": {
            "summary": f"noise {n}", "source": "ci", "severity": "info"}}
        if named:
            event["dedup_key"] = f"noise-{n}"
        events.append(event)
    return events


def test_a_held_trigger_with_a_minted_dedup_key_is_not_remembered(api, fake) -> None:
    assert api.post("/v2/enqueue", json=noise(50, named=False)).status_code == 202
    assert fake.zcard(NAMES.held) == 0
    assert api.post("/v2/enqueue", json=noise(5, named=True)).status_code == 202
    assert fake.zcard(NAMES.held) == 5  # a named one is: its follow-ups are held too
    resolve = {"event_action": "resolve", "dedup_key": "noise-3"}
    assert api.post("/v2/enqueue", json=resolve).json["message"].startswith("Held")


def test_held_incidents_are_bounded_oldest_forgotten_first(routed, fake) -> None:
    api = create_app(replace(routed, incidents_max=10), client=fake).test_client()
    for start in range(0, 30, 10):
        assert api.post("/v2/enqueue", json=noise(10, True, start)).status_code == 202
    assert fake.zcard(NAMES.held) == 10
    assert fake.hlen(NAMES.owners) == 10  # the owners of those forgotten went with them
    assert int(fake.hget(NAMES.shed, "held")) == 20
    newest = {"event_action": "resolve", "dedup_key": "noise-29"}
    assert api.post("/v2/enqueue", json=newest).json["message"].startswith("Held")
    metrics = api.get("/metrics", environ_base=UNIX).text
    assert 'pd_relay_shed_total{kind="held"} 20.0' in metrics


def test_each_keys_remembered_incidents_are_bounded(settings, fake) -> None:
    app = create_app(replace(settings, incidents_max=7), client=fake).test_client()
    events = [{"event_action": "trigger", "dedup_key": f"i-{n}", "payload": {
        "summary": "s", "source": "db1", "severity": "critical"}} for n in range(60)]
    assert app.post("/v2/enqueue", json=events).status_code == 202
    sizes = [fake.zcard(NAMES.incidents(key_id(key))) for key in settings.routing_keys]
    assert max(sizes) == 7
    assert int(fake.hget(NAMES.shed, "incidents")) == 60 - sum(sizes)


def test_the_history_is_bounded_in_bytes_however_large_each_calls_entry(settings,
                                                                        fake) -> None:
    small = replace(settings, history_max_mb=0.05)  # 52 KB
    app = create_app(small, client=fake).test_client()
    for call in range(40):  # 40 calls of 100 stories: about 400 KB written
        events = [{"event_action": "trigger", "dedup_key": f"c{call}-{n}".ljust(60, "x"),
                   "payload": {"summary": "s", "source": "db1", "severity": "critical"}}
                  for n in range(100)]
        assert app.post("/v2/enqueue", json=events).status_code == 202
    entries = fake.xrange(NAMES.history)
    kept = sum(len(fields["v"]) + ENTRY_OVERHEAD for _, fields in entries)
    biggest = max(len(fields["v"]) + ENTRY_OVERHEAD for _, fields in entries)
    assert kept <= small.history_max_bytes + biggest
    assert kept >= small.history_max_bytes - small.history_max_bytes / MARKS - biggest
    assert 4 <= len(entries) < 40


class HistoryCap(RuleBasedStateMachine):
    """Any mix of steps of any size, and trims by age (the housekeeping's): the stream
    never holds more than its cap and one entry, and never less than its cap less one
    mark's step and one entry, of what was written since the last trim by age."""

    CAP = 4_000

    def __init__(self) -> None:
        super().__init__()
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.history = History(self.fake, NAMES, replace(
            Settings(), history_max_entries=10**6, history_max_mb=self.CAP / 2**20))
        self.sizes: dict[str, int] = {}  # every entry written since the last trim by age
        self.biggest = 0

    @rule(width=st.integers(0, 3_000), step=st.sampled_from(["delivered", "attempt"]))
    def note(self, width: int, step: str) -> None:
        self.history.note(step, 1, i="0" * 16, d="x" * width)
        newest, fields = self.fake.xrevrange(NAMES.history, count=1)[0]
        size = len(fields["s"]) + len(fields["k"]) + len(fields["x"]) + ENTRY_OVERHEAD
        assert fields["x"] == line(i="0" * 16, d="x" * width).decode()
        self.sizes[newest] = size
        self.biggest = max(self.biggest, size)

    @precondition(lambda self: self.fake.xlen(NAMES.history) > 0)
    @rule(data=st.data())
    def trim_by_age(self, data: st.DataObject) -> None:
        ids = [entry_id for entry_id, _ in self.fake.xrange(NAMES.history)]
        first = data.draw(st.sampled_from(ids))
        self.fake.xtrim(NAMES.history, minid=first, approximate=False)
        self.sizes = {entry_id: size for entry_id, size in self.sizes.items()
                      if entry_id >= first}

    @invariant()
    def within_the_cap(self) -> None:
        ids = [entry_id for entry_id, _ in self.fake.xrange(NAMES.history)]
        kept = sum(self.sizes[entry_id] for entry_id in ids)
        assert kept <= self.CAP + self.biggest
        assert ids == sorted(self.sizes)[-len(ids):] if ids else not self.sizes
        assert kept >= min(sum(self.sizes.values()),
                           self.CAP - self.CAP / MARKS - self.biggest)
        assert self.fake.zcard(NAMES.history_ledger) <= MARKS + 2


TestHistoryCap = HistoryCap.TestCase
TestHistoryCap.settings = hypothesis_settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_a_full_redis_sheds_history_held_incidents_and_notices_counted(fake) -> None:
    for _ in range(300):
        fake.xadd(NAMES.history, {"s": "accepted", "v": "x" * 50})
    fake.zadd(NAMES.held, {f"h{n}": n for n in range(5)})
    fake.hset(NAMES.owners, mapping={f"h{n}": "s:noisy" for n in range(5)})
    fake.rpush(NAMES.outbox, "1\nnotice\nevent", "2\nnotice\nevent!")
    fake.hset(NAMES.channel_stats, "bytes", 100)
    assert Shed(fake, NAMES).make_room()
    assert fake.xlen(NAMES.history) <= 200  # the older half, in whole nodes
    assert fake.zcard(NAMES.held) == 0 and fake.llen(NAMES.outbox) == 0
    assert fake.hlen(NAMES.owners) == 0  # forgotten with their incidents
    assert int(fake.hget(NAMES.channel_stats, "bytes")) == 100 - 14 - 15
    assert int(fake.hget(NAMES.channel_stats, "skipped")) == 2
    shed = fake.hgetall(NAMES.shed)
    assert int(shed["history"]) == 300 - fake.xlen(NAMES.history)
    assert shed["held"] == "5" and shed["notices"] == "2"
    fake.delete(NAMES.history)
    assert not Shed(fake, NAMES).make_room()  # nothing left to shed: the page must wait


@pytest.mark.parametrize("version_error", [
    "OOM command not allowed when used memory > 'maxmemory'.",
    "Error running script (call to f_1): @user_script:1: @user_script: 1: -OOM command not "
    "allowed when used memory > 'maxmemory'.",
])
def test_the_ingress_sheds_and_stores_once_more_when_redis_is_full(
        client, fake, monkeypatch, version_error: str) -> None:
    from relay.store import EventStore

    real, calls = EventStore._command, []  # type: ignore[var-annotated]

    def full_once(self: EventStore, *command: object) -> object:
        calls.append(command)
        if len(calls) == 1:
            import redis

            raise redis.exceptions.ResponseError(version_error)
        return real(self, *command)

    for _ in range(200):
        fake.xadd(NAMES.history, {"s": "accepted", "v": "x"})
    monkeypatch.setattr(EventStore, "_command", full_once)
    event = {"event_action": "trigger", "payload": {"summary": "s", "source": "db1",
                                                    "severity": "critical"}}
    answer = client.post("/v2/enqueue", json=event)
    assert answer.status_code == 202, answer.json
    assert int(fake.hget(NAMES.shed, "history")) > 0


def test_a_lowered_cap_is_reached_over_calls_a_thousand_at_a_time(settings, fake) -> None:
    """Every script call does bounded work: after RELAY_INCIDENTS_MAX is lowered, a call
    that remembers a new incident forgets at most 1,000 of the set's (with their owners),
    the next ones more."""
    key = settings.routing_keys[0]
    remembered = NAMES.incidents(key_id(key))
    recent = int(fake.time()[0]) * 1000  # not idle: only the cap forgets them
    fake.zadd(remembered, {f"old-{n}": recent - n for n in range(2_500)})
    fake.hset(NAMES.owners, mapping={f"old-{n}": "a" for n in range(2_500)})
    app = create_app(replace(settings, incidents_max=10), client=fake).test_client()
    sizes = []
    for n in range(3):
        event = {"event_action": "trigger", "dedup_key": f"new-{n}", "routing_key": key,
                 "payload": {"summary": "s", "source": "db1", "severity": "critical"}}
        assert app.post("/v2/enqueue", json=event).status_code == 202
        sizes.append(fake.zcard(remembered))
    assert sizes == [1_501, 502, 10]  # each call adds one, forgets at most 1,000
    assert fake.hlen(NAMES.owners) == 10
