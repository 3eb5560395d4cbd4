"""A 429 that says when to come back (Telegram's ``parameters.retry_after``, a
``Retry-After`` header) is obeyed: the channel pauses that long, and then sends at its
pace again. Cutting the pace as well (the lanes' AIMD, for PagerDuty) stalled it: a
Telegram channel (20 a minute) cut to 2, with the refused attempt holding one of them,
sent the next message after the 7 s pause and the one after that only ~30 s later. A
429 that does not say when still cuts the pace: it is the only signal there is."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
from rq import Retry

from relay.channels.jobs import Courier
from relay.names import Names
from relay.routes.channel_types import PER_MINUTE
from relay.routes.channels import Breaker, Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from tests import standins
from tests.standins import StandIn
from tests.test_channel_types import BOT_TOKEN, notice
from tests.test_channels import Session

NAMES = Names("pdr")


@pytest.fixture
def bot() -> Iterator[StandIn]:
    stand_in = StandIn(standins.telegram(BOT_TOKEN))
    yield stand_in
    stand_in.close()


def courier(fake: fakeredis.FakeRedis, channel: Channel, slept: list[float],
            session: Session | None = None) -> Courier:
    return Courier(fake, Settings(), RoutesFile(channels=(channel,)), session=session,
                   sleep=slept.append, jitter=lambda: 0.0)


def test_after_a_telegram_429_the_next_messages_go_once_its_retry_after_passed(
        fake: fakeredis.FakeRedis, bot: StandIn) -> None:
    channel = Channel("t", "telegram", url=bot.url, token=BOT_TOKEN, chat="-100123",
                      per_minute=PER_MINUTE["telegram"], breaker=Breaker(failures=0))
    assert channel.per_minute == 20  # Telegram's own limit for a group
    slept: list[float] = []
    sender = courier(fake, channel, slept)
    bot.script(standins.TELEGRAM_429)
    first = sender.deliver("t", notice("one").to_json())
    assert isinstance(first, Retry) and first.intervals == [7]  # its retry_after
    assert 6_000 < fake.pttl(NAMES.channel_pause("t")) <= 7_000
    fake.delete(NAMES.channel_pause("t"))  # the 7 s pass
    for summary in ("one", "two", "three", "four"):  # at its pace again, none waits
        assert sender.deliver("t", notice(summary).to_json()) == "sent: message 42"
    assert not slept and bot.statuses() == [429, 200, 200, 200, 200]


def test_a_429_that_does_not_say_when_cuts_the_pace(fake: fakeredis.FakeRedis) -> None:
    hook = Channel("hook", "webhook", url="https://h.example/x", per_minute=20,
                   breaker=Breaker(failures=0))
    sender = courier(fake, hook, [], Session((429, {}, "slow down"), (200, {}, "ok")))
    assert isinstance(sender.deliver("hook", notice().to_json()), Retry)
    assert fake.hget(NAMES.channel_throttle("hook"), "limit") == "2"  # a tenth of 20
    assert sender.deliver("hook", notice().to_json()) == "ok"
    assert isinstance(sender.deliver("hook", notice().to_json()), Retry)  # cut: a wait
