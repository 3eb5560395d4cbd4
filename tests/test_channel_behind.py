"""One paced channel holds up no other (issue 30, fix 1): each channel has its own bound
of jobs waiting in RQ; past it, its new notices are gathered into a ``backlog`` digest,
taken once the channel has room again, and the dispatcher goes on emptying the outbox
for the other channels (before: the channels' one bound, reached by one paced channel,
stopped the dispatcher, and a digest channel on the same route counted only what fitted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from relay.app import create_app
from relay.channels.digest import Digest
from relay.channels.notice import Entry, Notice
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import put_digest_job, put_job, rq_queue, rq_waiting
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import load
from relay.settings import Settings
from tests.conftest import UNIX, trigger

NAMES = Names("pdr")
STORM = 300
BOUND = 20


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stormed(tmp_path: Path, keys: tuple[str, ...]) -> tuple[Any, ...]:
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n")
    (tmp_path / "routes.yml").write_text("""
channels:
  - {name: chat, type: slack, url: "https://x"}
  - {name: digest, type: slack, url: "https://y", digest: 3s}
  - {name: hook, type: webhook, url: "https://z"}
routes:
  - {name: db, keys: [db], channels: [chat, digest, hook]}
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                  "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml"),
                                  "RELAY_ALLOW_ANONYMOUS": "true"})
    jobs = fakeredis.FakeRedis()  # RQ wants bytes
    fake = fakeredis.FakeRedis(server=jobs.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    app = create_app(settings, client=fake).test_client()
    for first in range(0, STORM, 100):
        events = [trigger(f"storm {n}", dedup_key=f"s{n}") for n in range(first, first + 100)]
        assert app.post("/v2/enqueue", json=events).status_code == 202
    routes = load(tmp_path / "routes.yml", settings.key_names)
    channels = {c.name: c for c in routes.channels}
    clock = Clock(1_000_000.0)
    dispatcher = Dispatcher(
        fake, NAMES, settings, channels,
        lambda channel, notice: put_job(jobs, NAMES, channel, notice), routes=routes,
        put_digest=lambda channel, digest: put_digest_job(jobs, NAMES, channel, digest),
        backlog=lambda: rq_waiting(jobs, NAMES, list(channels)), channel_max=BOUND,
        sleep=lambda s: None, clock=clock)
    return dispatcher, jobs, fake, clock


def total(fake: fakeredis.FakeRedis, channel: str, group: str) -> int:
    return int(fake.hget(NAMES.gathering(channel, group), "total") or 0)


def test_a_channel_at_its_bound_gathers_and_holds_up_no_other(stormed) -> None:
    dispatcher, jobs, fake, clock = stormed
    for _ in range(2 * STORM):  # no channel worker: nothing leaves RQ
        if fake.llen(NAMES.outbox) == 0:
            break
        dispatcher.step(0)
    # the outbox is empty: no channel held it up
    assert fake.llen(NAMES.outbox) == 0 and fake.llen(NAMES.outbox_taken) == 0
    assert not fake.hget(NAMES.channel_stats, "dispatch_held")
    waiting = rq_waiting(jobs, NAMES, ["chat", "digest", "hook"])
    # the chat and the hook each made their bound of jobs and gathered the rest
    assert waiting == {"chat": BOUND, "digest": 0, "hook": BOUND}, waiting
    assert total(fake, "chat", "backlog") == STORM - BOUND
    assert total(fake, "hook", "backlog") == STORM - BOUND
    # the digest channel on the same route counted every trigger at once
    assert total(fake, "digest", "digest") == STORM

    # due, but the chat has no room yet: its backlog waits (the digest channel's goes)
    clock.now += 61
    dispatcher.step(0)
    assert total(fake, "chat", "backlog") == STORM - BOUND
    assert rq_waiting(jobs, NAMES, ["digest"]) == {"digest": 1}
    # a notice meanwhile joins it: nothing overtakes the gathered ones
    app_post(fake, dispatcher, "late 1")
    dispatcher.step(0)
    assert total(fake, "chat", "backlog") == STORM - BOUND + 1
    assert rq_waiting(jobs, NAMES, ["chat"]) == {"chat": BOUND}

    # the chat took its jobs: its digest goes, counting every notice it stood for
    rq_queue(jobs, NAMES, "chat").empty()
    clock.now += 6
    dispatcher.step(0)
    assert not fake.exists(NAMES.gathering("chat", "backlog"))
    queued = rq_queue(jobs, NAMES, "chat").jobs
    assert len(queued) == 1 and queued[0].func_name.endswith("deliver_digest")
    digest = queued[0].args[1]
    assert digest["reason"] == "backlog" and digest["total"] == STORM - BOUND + 1
    # and then the channel is no longer behind: the next notice is a job of its own
    app_post(fake, dispatcher, "late 2")
    dispatcher.step(0)
    assert len(rq_queue(jobs, NAMES, "chat").jobs) == 2
    assert not fake.exists(NAMES.gathering("chat", "backlog"))


def app_post(fake: fakeredis.FakeRedis, dispatcher: Dispatcher, summary: str) -> None:
    app = create_app(dispatcher.settings, client=fake).test_client()
    assert app.post("/v2/enqueue", json=trigger(summary)).status_code == 202


def test_a_recovered_entry_is_gathered_once(stormed) -> None:
    """A dispatcher that died after gathering a behind channel's notice: the next one
    makes the entry again and gathers it no second time."""
    dispatcher, jobs, fake, _ = stormed
    for _ in range(2 * STORM):
        if fake.llen(NAMES.outbox) == 0:
            break
        dispatcher.step(0)
    before = total(fake, "chat", "backlog")
    app_post(fake, dispatcher, "late")
    raw = fake.lmove(NAMES.outbox, NAMES.outbox_taken, "LEFT", "RIGHT")
    dispatcher.send(Entry.parse(raw))  # gathered, then the dispatcher dies
    assert total(fake, "chat", "backlog") == before + 1
    dispatcher.recover()  # the next one makes the entry taken again
    assert total(fake, "chat", "backlog") == before + 1
    assert fake.llen(NAMES.outbox_taken) == 0
    assert rq_waiting(jobs, NAMES, ["chat", "hook"]) == {"chat": BOUND, "hook": BOUND}


def test_metrics_and_status_show_the_open_gatherings(stormed, capsys) -> None:
    """/metrics and `channels status` show each channel's open gatherings and the notices
    waiting in them for a digest, by why (issue 30, fix 3)."""
    from relay.channels.commands import read, status

    dispatcher, jobs, fake, _ = stormed
    for _ in range(2 * STORM):
        if fake.llen(NAMES.outbox) == 0:
            break
        dispatcher.step(0)
    text = create_app(dispatcher.settings, client=fake).test_client().get(
        "/metrics", environ_base=UNIX).get_data(as_text=True)
    behind = STORM - BOUND
    for line in (f'pd_relay_channel_gathered{{channel="chat",reason="backlog"}} {behind}.0',
                 f'pd_relay_channel_gathered{{channel="hook",reason="backlog"}} {behind}.0',
                 f'pd_relay_channel_gathered{{channel="digest",reason="digest"}} {STORM}.0',
                 'pd_relay_channel_gatherings{channel="chat",reason="backlog"} 1.0'):
        assert line in text, line
    assert 'pd_relay_channel_gathered{channel="chat",reason="digest"}' not in text
    found = read(fake, jobs, NAMES, ["chat", "digest", "hook"])["channels"]
    assert [row["gathered"] for row in found] == [
        {"backlog": behind}, {"digest": STORM}, {"backlog": behind}]
    status(fake, jobs, NAMES, ["chat", "digest", "hook"], False)
    out = capsys.readouterr().out
    assert f"chat: {behind} notice(s) gathered for digests (backlog {behind})" in out, out


def test_a_recovered_entry_sent_before_is_not_gathered_too(stormed) -> None:
    """A dispatcher that died after making a notice's job: the next one, finding the
    channel behind by then, makes the job again (RQ refuses the copy) rather than
    gathering the notice too (a message and a digest's line for one notice)."""
    dispatcher, jobs, fake, clock = stormed
    for _ in range(2 * STORM):
        if fake.llen(NAMES.outbox) == 0:
            break
        dispatcher.step(0)
    rq_queue(jobs, NAMES, "chat").empty()  # the chat caught up: its backlog digest goes
    rq_queue(jobs, NAMES, "hook").empty()
    clock.now += 61
    dispatcher.step(0)
    assert not fake.exists(NAMES.gathering("chat", "backlog"))
    app_post(fake, dispatcher, "late")
    raw = fake.lmove(NAMES.outbox, NAMES.outbox_taken, "LEFT", "RIGHT")
    dispatcher.measure()
    dispatcher.send(Entry.parse(raw))  # its jobs made, then the dispatcher dies
    assert rq_waiting(jobs, NAMES, ["chat"]) == {"chat": 2}  # the digest and the notice
    dispatcher.channel_max = 2  # by now the channel is at its bound
    dispatcher.recover()
    assert rq_waiting(jobs, NAMES, ["chat"]) == {"chat": 2}
    assert not fake.exists(NAMES.gathering("chat", "backlog"))
    assert fake.llen(NAMES.outbox_taken) == 0


class Paced:
    """A channel's RQ queue as the decisions fill it and the channel takes from it."""

    def __init__(self) -> None:
        self.queue: list[int] = []  # each job: the notices it stands for
        self.told = 0

    def put(self, channel: Channel, notice: Notice) -> bool:
        self.queue.append(1)
        return True

    def put_digest(self, channel: Channel, digest: Digest) -> bool:
        self.queue.append(digest.total)
        return True

    def send(self, n: int) -> None:
        self.told += sum(self.queue[:n])
        del self.queue[:n]


OPS = st.one_of(st.tuples(st.just("notices"), st.integers(1, 30)),
                st.tuples(st.just("send"), st.integers(1, 10)),
                st.tuples(st.just("wait"), st.integers(100, 30_000)))


@hypothesis_settings(max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=60), bound=st.integers(1, 8))
def test_any_storm_and_pace_keep_the_bound_and_tell_every_notice_once(
        settings: Settings, ops: list[tuple[str, int]], bound: int) -> None:
    """Whatever the arrivals, the channel's pace and the dispatcher's rounds: a channel
    never holds more than its bound of jobs, and once it caught up every notice was
    told once, as a message of its own or counted in a backlog digest."""
    fake = fakeredis.FakeRedis(decode_responses=True)
    chat, paced, clock = Channel("chat", "slack", url="https://x"), Paced(), Clock(1e6)
    dispatcher = Dispatcher(fake, NAMES, settings, {"chat": chat}, paced.put,
                            put_digest=paced.put_digest, clock=clock, channel_max=bound,
                            backlog=lambda: {"chat": len(paced.queue)})

    def round_() -> None:
        dispatcher.measure()
        dispatcher.decider.flush(20)
        assert len(paced.queue) <= bound

    made = 0
    for op, n in ops:
        if op == "notices":
            round_()
            for _ in range(n):
                made += 1
                dispatcher.decider.decide(chat, Notice(
                    id=f"n{made}", action="trigger", event={"dedup_key": f"k{made}"},
                    accepted_ms=round(clock() * 1000), severity="warning"))
                assert len(paced.queue) <= bound
            dispatcher.decider.gatherings.unmark()
        elif op == "send":
            paced.send(n)
        else:
            clock.now += n / 1000
            round_()
    for _ in range(20):  # the channel catches up
        paced.send(len(paced.queue))
        clock.now += 61
        round_()
    assert paced.told == made
    assert fake.zcard(NAMES.gatherings_due) == 0
