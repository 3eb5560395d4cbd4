"""Gatherings (relay.channels.gather): notices kept for a digest, counted exactly, their
first lines kept, taken once when due; on fakeredis and a real redis-server (the Lua and
its cjson are Redis's own there)."""

from __future__ import annotations

import json
import random

import fakeredis
import pytest
import redis

from relay.channels.digest import DIGEST_BYTES, LINES_KEPT, Digest, Line
from relay.channels.gather import GATHERING_BYTES, SEP, Gatherings
from relay.channels.notice import Notice
from relay.channels.rqjobs import DIGEST_JOB_BYTES, job_id, put_digest_job, rq_queue
from relay.names import Names
from relay.routes.channels import Channel
from tests.heartbeat_fixtures import START, Clock, real_redis, redis_client

__all__ = ["real_redis", "redis_client"]  # fixtures
NAMES = Names("pdg")
T0 = int(START * 1000)


def notice(n: int, severity: str = "warning", action: str = "trigger",
           accepted_ms: int = T0) -> Notice:
    return Notice(id=f"n{n}", action=action, event={"dedup_key": f"k{n}", "payload": {
        "summary": f"disk {n} full", "source": "db-1", "severity": severity}},
        route="db", accepted_ms=accepted_ms, severity=severity)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gatherings(redis_client: redis.Redis, clock: Clock) -> Gatherings:
    return Gatherings(redis_client, NAMES, clock)


def test_a_gathering_counts_every_notice_and_is_taken_once_when_due(gatherings) -> None:
    parked = [notice(1, "critical"), notice(2, "warning", accepted_ms=T0 + 5),
              notice(3, "warning", "resolve", accepted_ms=T0 - 7), notice(4, "info", "change")]
    for item in parked:
        assert gatherings.park("chat", "digest", item, T0 + 60_000)
    assert gatherings.take_due(T0 + 59_999, 10) == []  # not due yet
    [digest] = gatherings.take_due(T0 + 60_000, 10)
    assert (digest.channel, digest.reason, digest.total) == ("chat", "digest", 4)
    assert digest.by_severity == {"critical": 1, "warning": 2, "info": 1}
    assert digest.by_state == {"triggered": 2, "resolved": 1, "change": 1}
    assert (digest.since_ms, digest.until_ms) == (T0 - 7, T0 + 5)
    assert [line.dedup_key for line in digest.lines] == ["k1", "k2", "k3", "k4"]
    assert digest.lines[0] == Line.of(parked[0]) and not digest.test
    client = gatherings.client
    assert not client.exists(NAMES.gathering("chat", "digest"), NAMES.gathered("chat", "digest"))
    assert client.zcard(NAMES.gatherings_due) == 0
    # taken, kept until its job is made (a crash between: the next dispatcher makes it)
    assert gatherings.take_due(T0 + 120_000, 10) == []
    assert gatherings.taken() == [digest]
    gatherings.forget([digest])
    assert gatherings.taken() == [] and not client.exists(NAMES.digests_taken)
    # the next one has another id
    gatherings.park("chat", "digest", notice(5), T0 + 1)
    [again] = gatherings.take_due(T0 + 1, 10)
    assert again.id != digest.id and again.total == 1


def test_only_the_first_lines_are_kept_and_the_size_is_bounded(gatherings) -> None:
    for n in range(3 * LINES_KEPT):
        gatherings.park("chat", "digest", notice(n, severity_of(n)), T0)
    client = gatherings.client
    assert client.llen(NAMES.gathered("chat", "digest")) == LINES_KEPT
    size = sum(len(str(line)) for line in client.lrange(NAMES.gathered("chat", "digest"), 0, -1))
    assert size < GATHERING_BYTES
    [digest] = gatherings.take_due(T0, 1)
    assert digest.total == 3 * LINES_KEPT and digest.more == 2 * LINES_KEPT
    assert [line.dedup_key for line in digest.lines] == [f"k{n}" for n in range(LINES_KEPT)]


def severity_of(n: int) -> str:
    return ("critical", "error", "warning", "info")[n % 4]


def test_a_due_is_pulled_earlier_never_later(gatherings) -> None:
    gatherings.park("chat", "digest", notice(1), T0 + 10_000)
    gatherings.park("chat", "digest", notice(2), T0 + 20_000)
    member = f"chat{SEP}digest"
    assert gatherings.client.zscore(NAMES.gatherings_due, member) == T0 + 10_000
    gatherings.park("chat", "digest", notice(3), T0 + 5_000)
    assert gatherings.client.zscore(NAMES.gatherings_due, member) == T0 + 5_000
    assert [d.total for d in gatherings.take_due(T0 + 5_000, 10)] == [3]


def test_digest_first_immediate_opens_an_empty_gathering_that_keeps_the_period(
        gatherings, clock) -> None:
    period = 60_000
    assert not gatherings.first("chat", "digest", notice(1), T0 + period, period)  # send it
    assert gatherings.first("chat", "digest", notice(2), T0 + period, period)
    assert gatherings.first("chat", "digest", notice(3), T0 + period, period)
    clock.advance(60)
    [digest] = gatherings.take_due(T0 + period, 10)
    assert digest.total == 2 and [line.dedup_key for line in digest.lines] == ["k2", "k3"]
    gatherings.forget([digest])
    # it opened again, empty, for one more period: the storm's next one is gathered
    assert gatherings.client.zscore(NAMES.gatherings_due, f"chat{SEP}digest") == T0 + 2 * period
    assert gatherings.first("chat", "digest", notice(4), T0 + 3 * period, period)
    [digest] = gatherings.take_due(T0 + 2 * period, 10)
    assert digest.total == 1
    gatherings.forget([digest])
    # a quiet period: the empty gathering closes silently, the next notice goes at once
    assert gatherings.take_due(T0 + 3 * period, 10) == []
    assert gatherings.taken() == [] and gatherings.client.zcard(NAMES.gatherings_due) == 0
    assert not gatherings.client.exists(NAMES.gathering("chat", "digest"))
    assert not gatherings.first("chat", "digest", notice(5), T0 + 4 * period, period)


def test_a_whole_digest_merges_counts_and_lines(gatherings) -> None:
    gatherings.park("chat", "breaker", notice(1, "critical"), T0)
    held = Digest(id="x", channel="chat", reason="breaker", since_ms=T0 - 100,
                  until_ms=T0 + 100, total=120, by_severity={"critical": 20, "info": 100},
                  by_state={"triggered": 119, "resolved": 1},
                  lines=tuple(Line.of(notice(n, "info")) for n in range(100, 100 + LINES_KEPT)),
                  test=True)
    gatherings.park("chat", "breaker", held, T0 + 99_999)
    [digest] = gatherings.take_due(T0, 10)
    assert (digest.reason, digest.total, digest.test) == ("breaker", 121, True)
    assert digest.by_severity == {"critical": 21, "info": 100}
    assert digest.by_state == {"triggered": 120, "resolved": 1}
    assert (digest.since_ms, digest.until_ms) == (T0 - 100, T0 + 100)
    assert len(digest.lines) == LINES_KEPT and digest.lines[0].dedup_key == "k1"


def test_a_mark_parks_a_notice_once_until_unmarked(gatherings) -> None:
    item = notice(1)
    assert gatherings.park("chat", "digest", item, T0, mark="chat\x1fn1")
    assert gatherings.park("chat", "digest", item, T0, mark="chat\x1fn1")  # a crash's retry
    assert not gatherings.first("hook", "digest", item, T0, 1000, mark="hook\x1fn1")
    assert not gatherings.first("hook", "digest", item, T0, 1000, mark="hook\x1fn1")  # again
    gatherings.unmark()
    assert not gatherings.client.exists(NAMES.gathering_marks)
    assert sorted((d.channel, d.total) for d in gatherings.take_due(T0, 10)) == [("chat", 1)]


def test_hold_postpones_a_due_gathering(gatherings) -> None:
    gatherings.park("chat", "muted:nights", notice(1), T0)
    gatherings.park("chat", "digest", notice(2), T0)
    later = T0 + 3_600_000
    seen: list[tuple[str, str]] = []

    def hold(channel: str, group: str) -> int | None:
        seen.append((channel, group))
        return later if group.startswith("muted:") else None

    assert [d.reason for d in gatherings.take_due(T0, 10, hold)] == ["digest"]
    assert sorted(seen) == [("chat", "digest"), ("chat", "muted:nights")]
    assert gatherings.client.zscore(NAMES.gatherings_due, f"chat{SEP}muted:nights") == later
    assert [d.reason for d in gatherings.take_due(later, 10)] == ["muted"]


def test_take_due_is_bounded_per_call(gatherings) -> None:
    for n in range(7):
        gatherings.park(f"c{n}", "digest", notice(n), T0 + n)
    assert len(gatherings.take_due(T0 + 10, 3)) == 3
    assert len(gatherings.taken()) == 3
    assert len(gatherings.take_due(T0 + 10, 10)) == 4


def test_a_gathering_of_another_version_is_left_alone(gatherings) -> None:
    gatherings.park("chat", "digest", notice(1), T0)
    gatherings.client.hset(NAMES.gathering("chat", "digest"), "v", 99)
    with pytest.raises(ValueError, match="another version"):
        gatherings.park("chat", "digest", notice(2), T0)
    assert gatherings.take_due(T0, 10) == []
    assert gatherings.client.hget(NAMES.gathering("chat", "digest"), "total") == "1"
    # looked at again in an hour, not in every round (it would take a round's room)
    assert gatherings.client.zscore(NAMES.gatherings_due, f"chat{SEP}digest") == T0 + 3_600_000


def test_a_digest_job_is_made_once_per_id() -> None:
    jobs = fakeredis.FakeRedis()  # RQ wants bytes
    fake = fakeredis.FakeRedis(server=jobs.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    gatherings = Gatherings(fake, NAMES, Clock())
    gatherings.park("chat", "digest", notice(1), T0)
    [digest] = gatherings.take_due(T0, 10)
    channel = Channel("chat", "slack", url="https://x")
    assert put_digest_job(jobs, NAMES, channel, digest)
    assert not put_digest_job(jobs, NAMES, channel, digest)  # a crash's second try
    queue = rq_queue(jobs, NAMES, "chat")
    assert queue.get_job_ids() == [job_id(digest.id, "chat")]
    job = queue.fetch_job(job_id(digest.id, "chat"))
    assert job.func_name == "relay.channels.jobs.deliver_digest"
    assert Digest.from_json(job.args[1]) == digest


def test_two_channels_digests_may_share_an_id_and_both_are_taken(gatherings) -> None:
    gatherings.park("chat", "digest", notice(1), T0)
    gatherings.park("hook", "digest", notice(2), T0)  # the same opening ms, seq 1 each
    taken = gatherings.take_due(T0, 10)
    assert sorted((d.channel, d.total) for d in taken) == [("chat", 1), ("hook", 1)]
    assert taken[0].id == taken[1].id  # unique per channel: jobs' ids add the channel
    gatherings.forget(taken[:1])
    assert [d.channel for d in gatherings.taken()] == [taken[1].channel]


def test_a_gathering_and_its_digest_job_are_bounded_in_bytes_whatever_was_sent() -> None:
    from tests.test_channel_job_bytes import ASTRAL, job_bytes

    jobs = fakeredis.FakeRedis()
    fake = fakeredis.FakeRedis(server=jobs.connection_pool.connection_kwargs["server"],
                               decode_responses=True)
    gatherings = Gatherings(fake, NAMES, Clock())
    rnd = random.Random(7)

    def big() -> str:  # each character 12 bytes of JSON, compressing badly
        return "".join(rnd.choices(ASTRAL, k=400))

    for n in range(2 * LINES_KEPT):
        gatherings.park("chat", "muted:nights", Notice(
            id=f"n{n}", action="trigger", route=big(), source=big(), severity=big(),
            summary=big(), event={"dedup_key": big(), "payload": {"summary": big(),
                                                                  "source": big()}},
            accepted_ms=T0), T0)
    kept = sum(len(line) for line in fake.lrange(NAMES.gathered("chat", "muted:nights"), 0, -1))
    fields = fake.hgetall(NAMES.gathering("chat", "muted:nights"))
    assert kept + sum(len(k) + len(v) for k, v in fields.items()) <= GATHERING_BYTES
    [digest] = gatherings.take_due(T0, 1)
    assert DIGEST_BYTES // 2 < len(json.dumps(digest.to_json())) <= DIGEST_BYTES  # near worst
    assert put_digest_job(jobs, NAMES, Channel("chat", "slack", url="https://x"), digest)
    assert job_bytes(jobs, job_id(digest.id, "chat")) <= DIGEST_JOB_BYTES  # RQ compresses


def test_gatherings_it_cannot_read_do_not_block_the_others(gatherings) -> None:
    """A later release's gatherings (another version, or a due-set member of another
    form) at the head of the due set, more than a round takes: the others are taken in
    the same round; those are counted and looked at again in an hour."""
    for n in range(25):
        gatherings.park(f"new{n}", "digest", notice(n), T0 + n)
        gatherings.client.hset(NAMES.gathering(f"new{n}", "digest"), "v", 99)
    gatherings.client.zadd(NAMES.gatherings_due, {f"odd{n}": T0 - 1 for n in range(25)})
    gatherings.park("chat", "digest", notice(99), T0 + 100)
    [digest] = gatherings.take_due(T0 + 1_000, 20)
    assert (digest.channel, digest.total) == ("chat", 1)
    assert gatherings.unreadable == 50
    due = gatherings.client.zrange(NAMES.gatherings_due, 0, -1, withscores=True)
    assert len(due) == 50 and {score for _, score in due} == {T0 + 1_000 + 3_600_000}
    assert gatherings.take_due(T0 + 2_000, 20) == [] and gatherings.unreadable == 50
