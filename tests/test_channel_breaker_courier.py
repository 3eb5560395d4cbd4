"""The courier and the breaker (relay.channels.jobs): while open, a notice or digest is not
sent but held (park, group "breaker", due at the next probe) and the job ends well; the
failure that opens it holds its own message, not RQ's failed registry; the probe's
success closes it and makes the held gathering due at once. A fake park stands in for
relay.channels.gather."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from relay.channels.digest import Digest
from relay.channels.jobs import Courier
from relay.channels.notice import Notice
from relay.errors import Rejected
from relay.names import Names
from relay.routes.channels import Breaker, Channel
from relay.routes.config import RoutesFile
from relay.settings import Settings
from tests.test_channel_breaker import Clock
from tests.test_channels import NOTICE, Session

NAMES = Names("pdr")
HOOK = Channel("hook", "webhook", url="https://h.example/x", retries=3,
               breaker=Breaker(failures=3, ratio=0, cooldown_s=30))


class Parked(list[tuple[str, str, Any, int]]):
    """Stands in for relay.channels.gather.Gatherings: what was parked, and made due."""

    def __init__(self) -> None:
        super().__init__()
        self.due: list[tuple[str, str, int]] = []

    def park(self, channel: str, group: str, item: Any, due_ms: int) -> None:
        self.append((channel, group, item, due_ms))

    def postpone(self, channel: str, group: str, due_ms: int) -> None:
        self.due.append((channel, group, due_ms))


def courier(fake, session: Session, clock: Clock, parked: Parked,
            channel: Channel = HOOK) -> Courier:
    return Courier(fake, Settings(channel_retry_base_s=10, channel_retry_max_s=100),
                   RoutesFile(channels=(channel,)), session=session, sleep=lambda s: None,
                   jitter=lambda: 1.0, gatherings=parked, clock=clock)


def test_an_open_breaker_holds_messages_and_one_probe_a_cool_down_closes_it(fake) -> None:
    clock, parked = Clock(), Parked()
    session = Session((500, {}, "down"), (404, {}, "gone"), (502, {}, "bad gateway"),
                      (500, {}, "still"), (200, {}, "ok"))
    sender = courier(fake, session, clock, parked)
    assert sender.deliver("hook", NOTICE, 0).intervals == [10]  # RetryLater: retried
    fake.delete(NAMES.channel_pause("hook"))
    with pytest.raises(Rejected):  # a refusal that does not open it: the failed registry
        sender.deliver("hook", NOTICE, 0)
    # the third failure in a row opens it: that message is held, not retried nor failed
    opened = int(clock() * 1000)
    assert sender.deliver("hook", NOTICE, 1) == "held: breaker open"
    assert [(c, g, due) for c, g, _, due in parked] == [("hook", "breaker", opened + 30_000)]
    assert isinstance(parked[0][2], Notice) and parked[0][2].id == "n1"
    assert fake.hget(NAMES.channel_stats, "hook:failed") == "1"  # the refusal only
    # open: nothing tried, a digest is held too (merged into the same gathering)
    clock.at += 29
    digest = Digest("d1", "hook", "digest", 0, 1, 2, {"critical": 2}, {"triggered": 2})
    assert sender.deliver_digest("hook", digest.to_json(), 0) == "held: breaker open"
    assert sender.deliver("hook", NOTICE, 0) == "held: breaker open"
    assert len(session.sent) == 3 and isinstance(parked[1][2], Digest)
    assert fake.hget(NAMES.channel_stats, "hook:held") == "3"
    # the cool-down is over: one probe; it fails: open again, the probe's message held
    clock.at += 1
    fake.delete(NAMES.channel_pause("hook"))
    assert sender.deliver("hook", NOTICE, 0) == "held: breaker open"
    assert len(session.sent) == 4 and parked[-1][3] == int(clock() * 1000) + 30_000
    assert sender.deliver("hook", NOTICE, 0) == "held: breaker open"  # no second probe
    assert len(session.sent) == 4
    # the next probe succeeds: closed, and the held gathering is due now
    clock.at += 30
    fake.delete(NAMES.channel_pause("hook"))
    assert not parked.due
    assert sender.deliver("hook", NOTICE, 0) == "ok"
    assert parked.due == [("hook", "breaker", int(clock() * 1000))]
    assert sender.breakers.read("hook").state == "closed"
    assert fake.hget(NAMES.channel_stats, "hook:sent") == "1"


def test_a_429_with_retry_after_is_a_pause_and_no_breaker_is_no_hold(fake) -> None:
    clock, parked = Clock(), Parked()
    slow = (429, {"Retry-After": "2"}, "slow down")
    sender = courier(fake, Session(*[slow] * 6), clock, parked)
    for _ in range(6):
        fake.delete(NAMES.channel_pause("hook"))
        assert not isinstance(sender.deliver("hook", NOTICE, 0), str)
    assert sender.breakers.read("hook").state == "closed" and not parked
    off = Channel("mail", "webhook", url="https://h.example/y", retries=0,
                  breaker=Breaker(failures=0))
    sender = courier(fake, Session(*[(404, {}, "no")] * 8), clock, parked, off)
    for _ in range(8):
        with pytest.raises(Rejected):
            sender.deliver("mail", NOTICE, 0)
    assert not parked and not fake.exists(NAMES.breaker("mail"))


def test_a_timeout_counts_as_a_failure(fake) -> None:
    clock, parked = Clock(), Parked()
    session = Session()
    session.request = lambda *a, **k: (_ for _ in ()).throw(  # type: ignore[method-assign]
        requests.ConnectTimeout())
    sender = courier(fake, session, clock, parked)
    for n in range(3):
        fake.delete(NAMES.channel_pause("hook"))
        sender.deliver("hook", NOTICE, n)
    assert len(parked) == 1 and sender.breakers.read("hook").open


def test_a_probe_the_pace_holds_back_is_given_back(fake) -> None:
    clock, parked = Clock(), Parked()
    slow = Channel("hook", "webhook", url="https://h.example/x", per_minute=1,
                   breaker=Breaker(failures=1, cooldown_s=5))
    sender = courier(fake, Session((500, {}, "down"), (200, {}, "ok")), clock, parked, slow)
    assert sender.deliver("hook", NOTICE, 0) == "held: breaker open"  # the minute's send
    clock.at += 5
    fake.delete(NAMES.channel_pause("hook"))
    waiting = sender.deliver("hook", NOTICE, 0)  # the probe, but the pace says wait
    assert not isinstance(waiting, str)
    assert sender.breakers.read("hook").probe_at_ms == int(clock() * 1000)  # given back
    fake.delete(NAMES.channel_window("hook"))
    assert sender.deliver("hook", NOTICE, 0) == "ok"
    assert sender.breakers.read("hook").state == "closed"


def test_held_messages_go_to_relay_channels_gather_by_default(fake) -> None:
    """The courier's own gatherings are relay.channels.gather's (until it lands on this
    branch, a hold fails loudly: the job fails, nothing is lost silently)."""
    sender = Courier(fake, Settings(), RoutesFile(channels=(HOOK,)),
                     session=Session(*[(404, {}, "no")] * 3), sleep=lambda s: None)
    for _ in range(2):
        with pytest.raises(Rejected):
            sender.deliver("hook", NOTICE, 0)
    try:
        import relay.channels.gather  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            sender.deliver("hook", NOTICE, 0)
        return
    assert sender.deliver("hook", NOTICE, 0) == "held: breaker open"
    assert fake.hget(NAMES.gathering("hook", "breaker"), "total") == "1"
    assert fake.zscore(NAMES.gatherings_due, "hook\x1fbreaker") is not None
