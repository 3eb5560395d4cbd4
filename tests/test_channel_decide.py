"""The dispatcher's decision per channel and notice (relay.channels.decide): muted (held
for a digest at the mute's end, or dropped and counted), gathered for a digest period
(the first of a quiet period at once, with ``digest_first: immediate``), or sent; with a
fake clock and a fake quiet-hours function (the real one: relay.routes.intervals)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from relay.app import create_app
from relay.channels.commands import read
from relay.channels.decide import Decider, Plan, group_of, timing_of
from relay.channels.digest import Digest
from relay.channels.notice import Entry, Notice
from relay.channels.outbox import Dispatcher
from relay.names import Names
from relay.routes.channels import Channel, Timing, Use
from relay.routes.config import Route, RoutesFile, Source
from relay.routes.intervals import TimeInterval
from tests.heartbeat_fixtures import START, Clock

NAMES = Names("pdr")
T0 = int(START * 1000)
NIGHTS = Timing(mute=("nights",))
CHAT = Channel("chat", "slack", url="https://x")


class Quiet:
    """A fake ``muted_until``: each named interval mutes from its start to its end (s)."""

    def __init__(self, **spans: tuple[float, float]) -> None:
        self.spans = spans
        self.asked: list[tuple[Timing, float]] = []

    def __call__(self, timing: Timing, intervals: Mapping[str, TimeInterval],
                 at: float) -> float | None:
        self.asked.append((timing, at))
        ends = [end for name in timing.mute
                for start, end in [self.spans.get(name, (0.0, 0.0))] if start <= at < end]
        return max(ends) if ends else None


def notice(n: int, severity: str = "warning", at_ms: int = T0, route: str = "db",
           source: str = "grafana", action: str = "trigger") -> Notice:
    return Notice(id=f"n{n}", action=action, event={"dedup_key": f"k{n}", "payload": {
        "summary": f"disk {n}", "source": "db-1", "severity": severity}},
        route=route, source=source, accepted_ms=at_ms, severity=severity)


class Sink:
    """What the decider made: jobs of notices and digests, with the clock's time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.notices: list[tuple[float, str, Notice]] = []
        self.digests: dict[tuple[str, str], Digest] = {}
        self.digest_at: list[tuple[float, str]] = []
        self.refused: list[tuple[str, str]] = []

    def put(self, channel: Channel, item: Notice) -> bool:
        self.notices.append((self.clock(), channel.name, item))
        return True

    def put_digest(self, channel: Channel, digest: Digest) -> bool:
        if (channel.name, digest.id) in self.digests:
            self.refused.append((channel.name, digest.id))
            return False  # RQ refuses a job id it has
        self.digests[channel.name, digest.id] = digest
        self.digest_at.append((self.clock(), channel.name))
        return True


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink(clock: Clock) -> Sink:
    return Sink(clock)


def decider(fake: fakeredis.FakeRedis, clock: Clock, sink: Sink, *channels: Channel,
            plan: Plan | None = None, quiet: Any = None) -> Decider:
    return Decider(fake, NAMES, {c.name: c for c in channels}, plan or Plan(), sink.put,
                   sink.put_digest, quiet or Quiet(), clock)


def test_the_use_is_the_routes_else_the_senders() -> None:
    routes = RoutesFile(
        sources=(Source("grafana", frozenset(), channels=(Use("chat", digest_s=9),)),),
        routes=(Route("db", channels=(Use("chat", digest_s=5),)),),
        time_intervals=(TimeInterval("nights"),))
    plan = Plan.of(routes)
    assert plan.use("chat", notice(1)) == Use("chat", digest_s=5)
    assert plan.use("chat", notice(1, route="web")) == Use("chat", digest_s=9)
    assert plan.use("chat", notice(1, route="web", source="other")) is None
    assert plan.use("hook", notice(1)) is None
    assert list(plan.intervals) == ["nights"]


def test_group_names_say_the_timing() -> None:
    for timing in (NIGHTS, Timing(mute=("a", "b"), active=("office",)), Timing(active=("o",))):
        assert timing_of(group_of(timing)) == timing
    assert group_of(Timing(mute=("a", "b"), active=("office",))) == "muted:a,b|office"


def test_a_muted_channel_loses_nothing_one_digest_at_the_mute_end(fake, clock, sink) -> None:
    end = START + 600
    chosen = decider(fake, clock, sink, replace(CHAT, timing=NIGHTS),
                     quiet=Quiet(nights=(START - 60, end)))
    made = [chosen.decide(replace(CHAT, timing=NIGHTS),
                          notice(n, ("critical", "warning", "info")[n % 3], T0 + n * 1000,
                                 action="resolve" if n % 5 == 4 else "trigger"))
            for n in range(30)]
    assert made == ["held"] * 30 and sink.notices == []
    assert len(chosen.muted_until.asked) == 1  # type: ignore[attr-defined]  # then known
    clock.advance(599)
    assert chosen.flush(10) == 0 and sink.digests == {}
    clock.advance(1)
    assert chosen.flush(10) == 1
    [digest] = sink.digests.values()
    assert (digest.reason, digest.total, digest.channel) == ("muted", 30, "chat")
    assert digest.by_severity == {"critical": 10, "warning": 10, "info": 10}
    assert digest.by_state == {"triggered": 24, "resolved": 6}
    assert (digest.since_ms, digest.until_ms) == (T0, T0 + 29_000)
    assert [line.dedup_key for line in digest.lines] == [f"k{n}" for n in range(30)]
    assert chosen.flush(10) == 0 and len(sink.digests) == 1  # once
    assert fake.hget(NAMES.channel_stats, "chat:digests") == "1"


def test_a_mute_followed_by_another_waits_for_the_second_end(fake, clock, sink) -> None:
    quiet = Quiet(nights=(START - 60, START + 100), early=(START + 100, START + 200))
    channel = replace(CHAT, timing=Timing(mute=("nights", "early")))
    chosen = decider(fake, clock, sink, channel, quiet=quiet)
    assert chosen.decide(channel, notice(1)) == "held"
    clock.advance(100)
    assert chosen.flush(10) == 0  # still muted (by "early"): pushed to its end
    assert fake.zscore(NAMES.gatherings_due, "chat\x1fmuted:nights,early") == T0 + 200_000
    clock.advance(50)
    assert chosen.decide(channel, notice(2, at_ms=T0 + 150_000)) == "held"
    clock.advance(50)
    assert chosen.flush(10) == 1
    assert [d.total for d in sink.digests.values()] == [2]


def test_min_severity_lets_an_event_through_a_mute(fake, clock, sink) -> None:
    channel = replace(CHAT, timing=Timing(mute=("nights",), min_severity="error"))
    chosen = decider(fake, clock, sink, channel, quiet=Quiet(nights=(START - 1, START + 9)))
    assert [chosen.decide(channel, notice(n, severity)) for n, severity in enumerate(
        ("critical", "error", "warning", "info"))] == ["sent", "sent", "held", "held"]
    assert [n.severity for _, _, n in sink.notices] == ["critical", "error"]


def test_a_uses_quiet_hours_and_muted_drop_come_before_the_channels(fake, clock, sink) -> None:
    channel = replace(CHAT, timing=Timing(mute=("weekend",)))
    plan = Plan({"db": {"chat": Use("chat", timing=NIGHTS, muted="drop")}},
                {"grafana": {"chat": Use("chat", timing=Timing(mute=("lunch",)))}})
    quiet = Quiet(nights=(START - 1, START + 9), lunch=(START - 1, START + 9))
    chosen = decider(fake, clock, sink, channel, plan=plan, quiet=quiet)
    assert chosen.decide(channel, notice(1)) == "dropped"  # the route's use: drop
    assert chosen.decide(channel, notice(2, route="web")) == "held"  # the source's: held
    assert chosen.decide(channel, notice(3, route="web", source="cli")) == "sent"
    assert fake.hget(NAMES.channel_stats, "chat:muted_dropped") == "1"
    assert fake.zrange(NAMES.gatherings_due, 0, -1) == ["chat\x1fmuted:lunch"]
    dropping = replace(channel, muted="drop", timing=NIGHTS)
    assert chosen.decide(dropping, notice(4, route="web", source="cli")) == "dropped"
    jobs = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs["server"])
    [row] = read(fake, jobs, NAMES, ["chat"])["channels"]
    assert (row["muted_dropped"], row["digests"]) == (2, 0)  # channels status --json


def test_a_timing_that_cannot_be_evaluated_mutes_nothing(fake, clock, sink, caplog) -> None:
    def broken(timing: Timing, intervals: Any, at: float) -> float | None:
        raise NotImplementedError("not yet")

    channel = replace(CHAT, timing=NIGHTS)
    chosen = decider(fake, clock, sink, channel, quiet=broken)
    with caplog.at_level(logging.ERROR):
        assert [chosen.decide(channel, notice(n)) for n in range(3)] == ["sent"] * 3
    assert sum("could not be evaluated" in r.getMessage() for r in caplog.records) == 1


def test_an_untimed_channel_asks_no_quiet_hours(fake, clock, sink) -> None:
    quiet = Quiet()
    chosen = decider(fake, clock, sink, CHAT, quiet=quiet)
    assert chosen.decide(CHAT, notice(1)) == "sent" and quiet.asked == []


def storm(chosen: Decider, channel: Channel, clock: Clock, events: int, over_s: float,
          flush_every_s: float = 0.1) -> list[str]:
    """``events`` notices spread over ``over_s`` seconds, the dispatcher flushing every
    ``flush_every_s``; then the clock runs on until every gathering is flushed."""
    made = []
    step = over_s / events
    flushed = clock()
    for n in range(events):
        made.append(chosen.decide(channel, notice(n, at_ms=int(clock() * 1000))))
        clock.advance(step)
        if clock() - flushed >= flush_every_s:
            chosen.flush(20)
            flushed = clock()
    for _ in range(int(3 * channel.digest_s / flush_every_s) + 2):
        clock.advance(flush_every_s)
        chosen.flush(20)
    return made


def messages(sink: Sink) -> list[float]:
    return sorted([at for at, _, _ in sink.notices] + [at for at, _ in sink.digest_at])


@pytest.mark.parametrize("first", ["gather", "immediate"])
def test_a_storm_is_one_message_a_period_and_every_event_is_counted(
        fake, clock, sink, first) -> None:
    channel = replace(CHAT, digest_s=3.0, digest_first=first)
    chosen = decider(fake, clock, sink, channel)
    made = storm(chosen, channel, clock, 1000, over_s=20.0)
    sent = [at for at, _, _ in sink.notices]
    assert len(sent) == (1 if first == "immediate" else 0) and made.count("sent") == len(sent)
    at = messages(sink)
    assert all(b - a >= 3.0 - 1e-3 for a, b in zip(at[:-1], at[1:], strict=True)), at
    assert 6 <= len(at) <= 8, at  # ~20 s of storm, 3 s periods
    assert len(sent) + sum(d.total for d in sink.digests.values()) == 1000
    assert sum(d.by_state["triggered"] for d in sink.digests.values()) == 1000 - len(sent)
    assert fake.zcard(NAMES.gatherings_due) == 0 and not fake.keys("pdr:channel:*")


def test_immediate_sends_a_quiet_periods_first_notice_at_once(fake, clock, sink) -> None:
    channel = replace(CHAT, digest_s=60.0, digest_first="immediate")
    chosen = decider(fake, clock, sink, channel)
    assert chosen.decide(channel, notice(1)) == "sent"
    assert chosen.decide(channel, notice(2)) == "gathered"
    clock.advance(60)
    assert chosen.flush(10) == 1
    clock.advance(60)  # one more period, quiet: the empty gathering closes silently
    assert chosen.flush(10) == 0
    assert chosen.decide(channel, notice(3)) == "sent"
    assert [n.id for _, _, n in sink.notices] == ["n1", "n3"]


def test_a_uses_digest_period_comes_before_the_channels(fake, clock, sink) -> None:
    channel = replace(CHAT, digest_s=60.0)
    plan = Plan({"db": {"chat": Use("chat", digest_s=0.0)},
                 "web": {"chat": Use("chat", digest_s=5.0)}})
    chosen = decider(fake, clock, sink, channel, plan=plan)
    assert chosen.decide(channel, notice(1)) == "sent"  # this route's use: no digest
    assert chosen.decide(channel, notice(2, route="web")) == "gathered"
    assert fake.zscore(NAMES.gatherings_due, "chat\x1fdigest") == T0 + 5000


# The dispatcher: its decisions, its flushes, and a crash's retries


def alert(dedup_key: str) -> dict[str, Any]:
    return {"event_action": "trigger", "dedup_key": dedup_key,
            "payload": {"summary": f"{dedup_key} down", "source": "db1", "severity": "warning"}}


def dispatcher(fake, settings, clock, sink, channel: Channel) -> Dispatcher:
    return Dispatcher(fake, NAMES, settings, {channel.name: channel}, sink.put, clock=clock,
                      put_digest=sink.put_digest, routes=RoutesFile(channels=(channel,)))


def test_the_dispatcher_gathers_and_flushes_in_its_steps(fake, settings, tmp_path, clock,
                                                         sink) -> None:
    settings = routes_settings(settings, tmp_path)
    app = create_app(settings, client=fake).test_client()
    for n in range(5):
        assert app.post("/v2/enqueue", json=alert(f"a{n}")).status_code == 202
    channel = replace(CHAT, digest_s=2.0)
    chosen = dispatcher(fake, settings, clock, sink, channel)
    assert chosen.step(0) == 5 and sink.notices == [] and sink.digests == {}
    clock.advance(2)
    chosen.step(0)  # the outbox is empty: the step flushes and waits (0 s here)
    [digest] = sink.digests.values()
    assert digest.total == 5 and [line.dedup_key for line in digest.lines] == [
        f"a{n}" for n in range(5)]
    assert not fake.exists(NAMES.gathering_marks, NAMES.digests_taken, NAMES.outbox_taken)


def test_a_crashed_dispatchers_notices_are_parked_once_and_its_digests_made(
        fake, settings, tmp_path, clock, sink) -> None:
    settings = routes_settings(settings, tmp_path)
    app = create_app(settings, client=fake).test_client()
    for n in range(3):
        assert app.post("/v2/enqueue", json=alert(f"a{n}")).status_code == 202
    channel = replace(CHAT, digest_s=2.0)
    first = dispatcher(fake, settings, clock, sink, channel)
    raws = [fake.lmove(NAMES.outbox, NAMES.outbox_taken, "LEFT", "RIGHT") for _ in range(3)]
    for raw in raws:
        first.send(Entry.parse(raw))  # parked; then it dies before the entries are done
    second = dispatcher(fake, settings, clock, sink, channel)
    assert second.recover() == 3  # the same entries again: parked once
    assert fake.hget(NAMES.gathering("chat", "digest"), "total") == "3"
    # it dies again, after taking the gathering and before making the digest's job
    clock.advance(2)
    [taken] = second.decider.gatherings.take_due(int(clock() * 1000), 10)
    third = dispatcher(fake, settings, clock, sink, channel)
    third.recover()
    assert list(sink.digests.values()) == [taken] and taken.total == 3
    # and once more after the next digest's job was made, before it was forgotten
    assert app.post("/v2/enqueue", json=alert("a9")).status_code == 202
    third.step(0)
    clock.advance(2)
    [again] = third.decider.gatherings.take_due(int(clock() * 1000), 10)
    assert sink.put_digest(channel, again)
    dispatcher(fake, settings, clock, sink, channel).recover()  # RQ refuses the copy
    assert [d.total for d in sink.digests.values()] == [3, 1]
    assert sink.refused == [("chat", again.id)] and not fake.exists(NAMES.digests_taken)


def routes_settings(settings: Any, tmp_path: Any, heard: str = "[chat]") -> Any:
    path = tmp_path / "routes.yml"
    path.write_text(f"""
channels:
  - {{name: chat, type: slack, url: "https://x"}}
  - {{name: hook, type: webhook, url: "https://y"}}
routes:
  - name: db
    match: ['source="db1"']
    channels: {heard}
""")
    return replace(settings, routes_file=path)


def test_after_a_redis_error_the_dispatcher_takes_over_what_it_left_taken(
        fake, settings, tmp_path, clock, sink) -> None:
    """A Redis error in the middle of a batch left its entries taken until another
    dispatcher took the lease (hours, with one channel worker): now the loop takes them
    over at once, and the notices it had parked are not parked again."""
    import redis as redis_module

    from relay.channels.worker import dispatch

    settings = routes_settings(settings, tmp_path, "[chat, hook]")
    app = create_app(settings, client=fake).test_client()
    for n in range(3):
        assert app.post("/v2/enqueue", json=alert(f"a{n}")).status_code == 202
    chat, hook = replace(CHAT, digest_s=60.0), Channel("hook", "webhook", url="https://y")
    failed: list[str] = []

    def put(channel: Channel, item: Notice) -> bool:
        if item.event["dedup_key"] == "a1" and not failed:
            failed.append("a1")
            raise redis_module.ConnectionError("the primary went away")
        return sink.put(channel, item)

    chosen = Dispatcher(fake, NAMES, settings, {"chat": chat, "hook": hook}, put, clock=clock,
                        put_digest=sink.put_digest,
                        routes=RoutesFile(channels=(chat, hook), routes=(
                            Route("db", channels=(Use("chat"), Use("hook"))),)))
    fake.set(NAMES.dispatcher, chosen.id)
    real_step, rounds = chosen.step, []

    class Stop(Exception):
        pass

    def step(block_s: int) -> int:
        rounds.append(block_s)
        if len(rounds) > 3:
            raise Stop
        return real_step(block_s) if fake.llen(NAMES.outbox) else 0  # never block here

    chosen.step = step  # type: ignore[method-assign]
    header = json.loads(fake.lindex(NAMES.outbox, 0).split("\n")[1])
    assert header["c"] == ["chat", "hook"], header  # both hear of them
    with pytest.raises(Stop):
        dispatch(chosen, sleep=lambda s: None)
    assert failed == ["a1"] and fake.llen(NAMES.outbox_taken) == 0
    assert sorted(n.event["dedup_key"] for _, _, n in sink.notices) == ["a0", "a0", "a1", "a2"]
    assert fake.hget(NAMES.gathering("chat", "digest"), "total") == "3"  # each once


def test_the_real_quiet_hours_hold_until_the_intervals_end(fake, clock, sink, tmp_path,
                                                           keys) -> None:
    """With the routes file's own time intervals (relay.routes.intervals): START is
    2027-01-15 08:00 UTC, a Friday; "mornings" 07:00-09:00 then "late" 09:00-09:30 hold
    one digest until 09:30, and a use without quiet hours of its own follows the channel's."""
    from relay.routes.config import load

    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n")
    path = tmp_path / "routes.yml"
    path.write_text("""
time_intervals:
  - name: mornings
    time_intervals: [{times: [{start_time: "07:00", end_time: "09:00"}]}]
  - name: late
    time_intervals: [{times: [{start_time: "09:00", end_time: "09:30"}], weekdays: [friday]}]
channels:
  - name: chat
    type: slack
    url: https://x
    mute_time_intervals: [mornings, late]
    muted_min_severity: critical
routes:
  - {name: db, keys: [db], channels: [chat]}
""")
    path.chmod(0o600)
    routes = load(path, ["db"])
    [channel] = routes.channels
    chosen = Decider(fake, NAMES, {"chat": channel}, Plan.of(routes), sink.put,
                     sink.put_digest, clock=clock)
    assert chosen.decide(channel, notice(1)) == "held"
    assert chosen.decide(channel, notice(2, "critical")) == "sent"
    assert fake.zscore(NAMES.gatherings_due, "chat\x1fmuted:mornings,late") == T0 + 5_400_000
    clock.advance(5_399)
    assert chosen.flush(10) == 0
    clock.advance(1)
    assert chosen.flush(10) == 1 and [d.total for d in sink.digests.values()] == [1]


def test_the_readme_digest_recipe_is_a_valid_routes_file(tmp_path, monkeypatch) -> None:
    """The README's digest example, as a user would copy it (with the mail channel it
    names, defined elsewhere in the README)."""
    import re
    from pathlib import Path

    from relay.routes.config import load

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### Digests: one message for many"):]
    recipe = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert recipe, "the README's digest section has a YAML example"
    path = tmp_path / "routes.yml"
    path.write_text(recipe.group(1).replace("routes:\n", """\
  - {name: dba-mail, type: email, host: smtp.example.org, sender: r@example.org,
     to: [dba@example.org]}
routes:
""", 1))
    path.chmod(0o600)
    monkeypatch.setenv("PD_RELAY_SECRET_TEAM_SLACK", "https://hooks.example/x")
    routes = load(path, ["db-team"])
    chat = {c.name: c for c in routes.channels}["team-chat"]
    assert (chat.digest_s, chat.digest_first) == (120.0, "immediate")
    [route] = routes.routes
    assert {u.name: u.digest_s for u in route.channels} == {"team-chat": None, "dba-mail": 600.0}


@hypothesis_settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(0, 2500), min_size=1, max_size=120),
       flush_ms=st.integers(50, 1000), period_ms=st.integers(1000, 4000),
       first=st.sampled_from(["gather", "immediate"]))
def test_any_arrivals_cost_one_message_a_period_and_count_every_notice(
        gaps: list[int], flush_ms: int, period_ms: int, first: str) -> None:
    """Whatever the arrivals and however often the dispatcher flushes: messages to a
    digest channel are a period apart at least, and count every notice once."""
    fake = fakeredis.FakeRedis(decode_responses=True)
    clock = Clock()
    sink = Sink(clock)
    channel = replace(CHAT, digest_s=period_ms / 1000, digest_first=first)
    chosen = decider(fake, clock, sink, channel)
    now, flushed = T0, T0
    for n, gap in enumerate(gaps):
        while flushed + flush_ms <= now + gap:  # the dispatcher's rounds meanwhile
            flushed += flush_ms
            clock.at = flushed / 1000
            chosen.flush(20)
        now += gap
        clock.at = now / 1000
        chosen.decide(channel, notice(n, at_ms=now))
    for _ in range(2 * period_ms // flush_ms + 2):  # then quiet until all is sent
        clock.at += flush_ms / 1000
        chosen.flush(20)
    sent = [round(at * 1000) for at, _, _ in sink.notices]
    at = sorted(sent + [round(when * 1000) for when, _ in sink.digest_at])
    assert all(b - a >= period_ms for a, b in zip(at[:-1], at[1:], strict=True)), at
    assert len(sent) + sum(d.total for d in sink.digests.values()) == len(gaps)
    assert first == "immediate" or not sent
    assert fake.zcard(NAMES.gatherings_due) == 0


def test_metrics_count_digests_and_dropped_messages(fake, settings) -> None:
    fake.hset(NAMES.channel_stats, mapping={"chat:digests": 3, "chat:muted_dropped": 7,
                                            "hook:digests": 1})
    from tests.conftest import UNIX

    text = create_app(settings, client=fake).test_client().get(
        "/metrics", environ_base=UNIX).get_data(as_text=True)
    for line in ('pd_relay_channel_digests_total{channel="chat"} 3.0',
                 'pd_relay_channel_digests_total{channel="hook"} 1.0',
                 'pd_relay_channel_muted_dropped_total{channel="chat"} 7.0'):
        assert line in text, text


def test_a_gathering_of_a_later_release_sends_the_notice_as_it_is(fake, clock, sink) -> None:
    channel = replace(CHAT, digest_s=60.0)
    chosen = decider(fake, clock, sink, channel)
    assert chosen.decide(channel, notice(1)) == "gathered"
    fake.hset(NAMES.gathering("chat", "digest"), "v", 2)  # written by a later release
    assert chosen.decide(channel, notice(2)) == "sent"
    assert [n.id for _, _, n in sink.notices] == ["n2"]
