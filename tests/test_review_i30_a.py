"""Review of issue 30's stateful channel machinery (gatherings, the dispatcher's decision,
the breaker and the courier): each test here failed on the merge under review (i30-int)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from relay.app import create_app
from relay.channels import jobs
from relay.channels.breaker import Breakers
from relay.channels.outbox import Dispatcher
from relay.channels.rqjobs import RESULT_TTL_S, put_digest_job, put_job, rq_backlog, rq_queue
from relay.channels.worker import ChannelWorker
from relay.names import Names
from relay.routes.channels import Breaker, Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from tests.heartbeat_fixtures import Clock
from tests.test_channel_decide import alert, routes_settings

NAMES = Names("pdr")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def job_hashes(client: Any) -> int:
    return sum(1 for _ in client.scan_iter(match="rq:job:*", count=1000))


def test_a_storm_to_an_open_breaker_keeps_no_rq_job_per_held_message(
        fake: fakeredis.FakeRedis, settings: Settings, tmp_path: Any, clock: Clock) -> None:
    """Promise 8. RQ keeps a finished job's hash RESULT_TTL_S, bounded (rqjobs' doc) by
    the channels' paces: at most ``per_minute`` sends a minute. A message held while the
    breaker is open skips the pace: each one was an RQ job that finished at once and was
    kept a minute, so a storm to an open-breaker channel kept as many jobs (up to 9 KB
    each) as the worker could run in a minute, past that bound. Held at the dispatcher,
    it makes no job at all, and is counted in the digest exactly as before."""
    settings = routes_settings(settings, tmp_path, "[hook]")
    app = create_app(settings, client=fake).test_client()
    storm = 150
    for n in range(storm):
        assert app.post("/v2/enqueue", json=alert(f"a{n}")).status_code == 202
    hook = Channel("hook", "webhook", url="https://y", per_minute=6, retries=3,
                   breaker=Breaker(failures=3, ratio=0, cooldown_s=300))
    breakers = Breakers(fake, NAMES, clock)
    for _ in range(3):
        breakers.record("hook", hook.breaker, "failed")
    assert breakers.read("hook").open
    jobs_client = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs["server"])
    dispatcher = Dispatcher(
        fake, NAMES, settings, {"hook": hook},
        lambda channel, notice: put_job(jobs_client, NAMES, channel, notice), 10_000,
        clock=clock, routes=RoutesFile(channels=(hook,)),
        put_digest=lambda channel, digest: put_digest_job(jobs_client, NAMES, channel, digest),
        backlog=lambda: rq_backlog(jobs_client, NAMES, ["hook"]), sleep=lambda s: None)
    jobs.install(jobs.Courier(fake, Settings(), RoutesFile(channels=(hook,)),
                              sleep=lambda s: None, clock=clock))
    try:
        for _ in range(20):
            if not fake.llen(NAMES.outbox):
                break
            dispatcher.step(0)
            ChannelWorker([rq_queue(jobs_client, NAMES, "hook")], connection=jobs_client,
                          serializer="json").work(burst=True, logging_level="ERROR")
    finally:
        jobs.install(None)  # type: ignore[arg-type]
    assert fake.llen(NAMES.outbox) == 0
    # nothing lost: every message of the storm waits in the breaker's gathering
    assert fake.hget(NAMES.gathering("hook", "breaker"), "total") == str(storm)
    kept = job_hashes(jobs_client)
    assert kept <= hook.per_minute * RESULT_TTL_S // 60, f"{kept} RQ jobs kept"


def test_a_webex_digest_fits_webexs_7439_bytes_of_markdown() -> None:
    """A provider's limit: Webex refuses a message whose markdown is over 7,439 bytes
    (its messages API). A digest lists 20 lines of up to ~256 bytes of the senders' text,
    each Markdown character escaped (doubled): past the limit, and the whole digest (every
    notice it stands for) was refused into the failed registry. It is cut to whole lines
    within the limit, its headline's counts whole, the tail counting what is not shown."""
    from relay.channels.digest import LINES_KEPT, Digest, Line
    from relay.channels.messages import digest_message
    from relay.channels.notice import fit

    lines = tuple(Line("triggered", "warning", fit(f"{n} " + "_*[]" * 100, 160), f"k{n}",
                       fit("<>" * 60, 96), "db", 0) for n in range(LINES_KEPT))
    digest = Digest("dg1-1", "wx", "muted", 0, 1, 500, {"warning": 500}, {"triggered": 500},
                    lines)
    body = digest_message(Channel("wx", "webex", token="t", room="r"), digest)["markdown"]
    assert len(body.encode()) <= 7439, len(body.encode())
    shown = body.split("\n")
    assert "500 notices held in quiet hours" in shown[0] and shown[1].startswith("TRIGGERED")
    assert shown[-1] == f"and {500 - (len(shown) - 2)} more"


def test_an_immediate_digest_channels_first_notice_is_held_when_its_breaker_is_open(
        fake: fakeredis.FakeRedis, clock: Clock) -> None:
    """(Of the fix above.) ``digest_first: immediate`` marks a quiet period's first notice
    "send it yourself"; held at the dispatcher, it must still be parked, and once."""
    from dataclasses import replace

    from tests.test_channel_decide import Sink, decider, notice

    hook = Channel("hook", "webhook", url="https://y", digest_s=60.0,
                   digest_first="immediate", breaker=Breaker(failures=1, cooldown_s=300))
    sink = Sink(clock)
    chosen = decider(fake, clock, sink, hook)
    Breakers(fake, NAMES, clock).record("hook", hook.breaker, "failed")
    assert chosen.decide(hook, notice(1)) == "held"
    assert chosen.decide(hook, notice(1)) == "held"  # a crashed dispatcher's retry
    assert fake.hget(NAMES.gathering("hook", "breaker"), "total") == "1"
    assert chosen.decide(hook, replace(notice(2))) == "gathered"  # within the period
    assert sink.notices == []


def test_a_muted_channel_holds_a_maintenance_notice_for_its_digest(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Any) -> None:
    """Quiet hours hold info and warning: a maintenance notice (severity info) to a channel
    in its mute interval was sent at once (the channel worker gave the notices the
    dispatcher's raw ``put``, past the decision), a 3 a.m. message to the team's room.
    It is decided like any notice: held for the digest at the mute's end."""
    import argparse
    import time
    from dataclasses import replace

    from relay.channels import worker
    from relay.channels.maintenance import Seen, notice

    path = tmp_path / "routes.yml"
    path.write_text("""
time_intervals:
  - name: always
    time_intervals: [{weekdays: ["sunday:saturday"]}]
channels:
  - {name: chat, type: slack, url: "https://x", maintenance: true,
     mute_time_intervals: [always]}
""")
    settings = replace(settings, routes_file=path)
    server = fakeredis.FakeServer()
    captured: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def notices(client: Any, names: Any, channels: Any, watched: Any, put: Any,
                *rest: Any) -> None:
        captured.update(put=put, channels=channels)
        raise Stop

    monkeypatch.setattr(worker, "Notices", notices)
    monkeypatch.setattr(worker, "exit_on_sigterm", lambda: None)
    monkeypatch.setattr(worker, "connect", lambda s, block_s=0.0, decode=True:
                        fakeredis.FakeRedis(server=server, decode_responses=decode))
    with pytest.raises(Stop):
        worker.command(settings, argparse.Namespace(channel=["chat"]))
    now = time.time()
    told = notice(Seen("w1", "w1", (), now - 60, now + 3600), "started", 0, now)
    captured["put"](captured["channels"]["chat"], told)
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    names = Names(settings.prefix)
    assert client.llen(rq_queue(client, names, "chat").key) == 0, "sent in quiet hours"
    assert client.hget(names.gathering("chat", "muted:always"), "total") == "1"


def test_a_channels_mute_followed_by_its_uses_waits_for_the_second_end(
        fake: fakeredis.FakeRedis, clock: Clock) -> None:
    """Consecutive mute intervals across timings: the channel is muted at night, the
    route's use of it in the morning, one beginning as the other ends. A notice held at
    night went out as a digest at the night's end, in the middle of the use's mute (the
    flush asked only the night's and the channel's timings). It waits for the first
    moment none of them mutes (``muted_until_all``'s meaning)."""
    from dataclasses import replace

    from relay.channels.decide import Plan
    from relay.routes.channels import Timing, Use
    from tests.heartbeat_fixtures import START
    from tests.test_channel_decide import CHAT, Quiet, Sink, decider, notice

    quiet = Quiet(night=(START - 60, START + 100), morning=(START + 100, START + 200))
    channel = replace(CHAT, timing=Timing(mute=("night",)))
    plan = Plan({"db": {"chat": Use("chat", timing=Timing(mute=("morning",)))}})
    sink = Sink(clock)
    chosen = decider(fake, clock, sink, channel, plan=plan, quiet=quiet)
    assert chosen.decide(channel, notice(1)) == "held"
    clock.advance(100)
    assert chosen.flush(10) == 0, "a digest in the use's mute"
    clock.advance(100)
    assert chosen.flush(10) == 1 and [d.total for d in sink.digests.values()] == [1]
