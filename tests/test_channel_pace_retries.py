"""Waiting is not failing: a job that waits for its channel's pace (or a pause) is handed
back to RQ for later, and only the sends that failed count toward the channel's
``retries``. Run through RQ's own worker (ChannelWorker) on fakeredis against a webhook
receiver on 127.0.0.1; "a minute passes" by emptying the channel's window and queueing
the jobs RQ scheduled, so nothing sleeps."""

from __future__ import annotations

from dataclasses import replace

import fakeredis
import pytest
from rq.job import Job

from relay.channels import commands, jobs, rqjobs
from relay.channels.rqjobs import put_job, rq_queue
from relay.channels.worker import ChannelWorker
from relay.names import Names
from relay.routes.channels import Breaker, Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from tests.receivers import WebhookReceiver
from tests.test_channel_breaker_courier import Parked
from tests.test_channel_failed_cap import notices

NAMES = Names("pdr")


class Rounds:
    """A channel's jobs run by RQ's worker, round after round, a minute apart."""

    def __init__(self, channel: Channel) -> None:
        server = fakeredis.FakeServer()
        self.channel = channel
        self.jobs = fakeredis.FakeRedis(server=server)
        self.client = fakeredis.FakeRedis(server=server, decode_responses=True)
        self.queue = rq_queue(self.jobs, NAMES, channel.name)
        self.parked = Parked()
        jobs.install(jobs.Courier(self.client, Settings(), RoutesFile(channels=(channel,)),
                                  sleep=lambda s: None, gatherings=self.parked))

    def put(self, count: int) -> None:
        for notice in notices(count):
            assert put_job(self.jobs, NAMES, self.channel, notice)

    def run(self, minute_passes: bool = True) -> None:
        """Work the queue; then the window empties (a minute) and the retries come due."""
        ChannelWorker([self.queue], connection=self.jobs, serializer="json").work(
            burst=True, logging_level="ERROR")
        if minute_passes:
            self.client.delete(NAMES.channel_window(self.channel.name),
                               NAMES.channel_pause(self.channel.name))
        registry = self.queue.scheduled_job_registry
        for job_id in registry.get_job_ids():
            registry.requeue(Job.fetch(job_id, connection=self.jobs, serializer="json"))

    def failed(self) -> list[str]:
        return self.queue.failed_job_registry.get_job_ids()

    def waiting(self) -> int:
        return self.queue.count + self.queue.scheduled_job_registry.count


@pytest.mark.parametrize("retries", [0, 1])
def test_waiting_for_the_pace_spends_none_of_a_messages_retries(
        hooks: WebhookReceiver, retries: int) -> None:
    chat = Channel("chat", "webhook", url=f"{hooks.url}/chat", per_minute=1, retries=retries,
                   breaker=Breaker(failures=0))
    rounds = Rounds(chat)
    try:
        rounds.put(3)
        for _ in range(6):  # three messages at one a minute: three rounds, and room
            rounds.run()
            if not rounds.waiting():
                break
        assert rounds.failed() == [] and rounds.waiting() == 0
        assert len(hooks.taken("/chat")) == hooks.tries("/chat") == 3  # all sent, once each
        assert sorted(m["notice"]["summary"] for m in hooks.taken("/chat")) == [
            "event 0", "event 1", "event 2"]
    finally:
        jobs.install(None)  # type: ignore[arg-type]


def test_failed_sends_still_end_a_message_after_its_retries_whatever_it_waited(
        hooks: WebhookReceiver) -> None:
    hooks.script("/down", steady=(500, {}, "down"))
    chat = Channel("chat", "webhook", url=f"{hooks.url}/down", per_minute=1, retries=2,
                   breaker=Breaker(failures=0))
    rounds = Rounds(chat)
    try:
        rounds.put(1)
        for _ in range(10):  # a failed send, then a wait for the pace, and again
            rounds.run(minute_passes=False)  # the window is spent: the job waits
            rounds.run()
            if not rounds.waiting():
                break
        assert hooks.tries("/down") == 3  # the first send and its two retries
        assert len(rounds.failed()) == 1 and rounds.waiting() == 0
        job = Job.fetch(rounds.failed()[0], connection=rounds.jobs, serializer="json")
        assert "HTTP 500 after 2 retries" in (job.latest_result().exc_string or "")
    finally:
        jobs.install(None)  # type: ignore[arg-type]


def test_a_message_waits_at_most_its_wait_max_then_fails_saying_why(
        hooks: WebhookReceiver) -> None:
    chat = Channel("chat", "webhook", url=f"{hooks.url}/chat", per_minute=60)
    assert rqjobs.wait_max_s(chat) == 3600  # 2 x 1,000 jobs at 60 a minute, at least an hour
    assert rqjobs.wait_max_s(replace(chat, per_minute=1)) == 2 * 60 * 1000
    rounds = Rounds(chat)
    try:
        rounds.put(1)
        for _ in range(2):  # paused for an hour (a 429's Retry-After), twice
            rounds.client.set(NAMES.channel_pause("chat"), "1", px=3_600_000)
            rounds.run(minute_passes=False)
            if rounds.failed():
                break
            job = Job.fetch(rounds.queue.get_job_ids()[0], connection=rounds.jobs,
                            serializer="json")
            assert job.meta == {rqjobs.WAITED_S: 3600}  # a wait, not a failed send
        assert len(rounds.failed()) == 1 and rounds.waiting() == 0 and hooks.tries("/chat") == 0
        job = Job.fetch(rounds.failed()[0], connection=rounds.jobs, serializer="json")
        assert "waited 3600 s for the channel's pace" in (job.latest_result().exc_string or "")
        assert rounds.client.hget(NAMES.channel_stats, "chat:failed") == "1"
        # requeued, it gets a fresh count of failed sends and of time waited
        assert commands.requeue(rounds.jobs, NAMES, ["chat"], None) == 0
        rounds.client.set(NAMES.channel_pause("chat"), "1", px=3_600_000)
        rounds.run()  # it waits again (an hour), rather than failing at once
        assert rounds.failed() == [] and hooks.tries("/chat") == 0
        rounds.run()
        assert rounds.waiting() == 0 and len(hooks.taken("/chat")) == 1
    finally:
        jobs.install(None)  # type: ignore[arg-type]
