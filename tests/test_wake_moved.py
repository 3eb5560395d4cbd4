"""The wake listener under Sentinel (issue 27): once a read times out with nothing
heard and the Sentinels name another primary than its subscription's, it subscribes
again (on the new primary) and wakes every key; a plain URL's client never asks."""

from __future__ import annotations

import threading
from typing import Any

import fakeredis

from relay.names import Names
from worker import wake


class Subscription:
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.connection = object()
        self.closed = False

    def subscribe(self, channel: str) -> None:
        self.listener.subscriptions.append(channel)

    def get_message(self, timeout: float) -> Any:
        self.listener.reads += 1
        if self.listener.reads >= 4:
            self.listener.stopping.set()
        return None  # nothing heard: the read timed out

    def close(self) -> None:
        self.closed = True


class Listener:
    """What ``wake.listen`` uses of a Fleet."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.names = Names()
        self.subscriptions: list[str] = []
        self.reads = 0
        self.woken_all = 0
        self.client = self

    def pubsub(self, ignore_subscribe_messages: bool = True) -> Subscription:
        return Subscription(self)

    def wake_all(self) -> None:
        self.woken_all += 1

    def wake(self, kid: str) -> None:
        raise AssertionError("nothing was published")


def test_the_listener_subscribes_again_when_the_primary_moved(monkeypatch) -> None:
    fleet = Listener()
    answers = iter([False, True, False, False])  # the second silence finds it moved
    monkeypatch.setattr(wake, "moved", lambda client, connection: next(answers))
    wake.listen(fleet)  # type: ignore[arg-type]
    assert fleet.subscriptions == [Names().wake, Names().wake]
    assert fleet.woken_all == 2


def test_a_plain_clients_subscription_never_counts_as_moved() -> None:
    client = fakeredis.FakeRedis()
    pubsub = client.pubsub()
    pubsub.subscribe("ch")
    assert not wake.moved(client, pubsub.connection)
