"""Group commit: every request is stored before it returns, errors reach each request."""

from __future__ import annotations

import threading
import time

import pytest

from relay.commit import GroupCommit


def test_concurrent_requests_share_store_calls_and_each_is_stored() -> None:
    calls: list[list[tuple[str, str]]] = []

    def store(items):  # type: ignore[no-untyped-def]
        time.sleep(0.01)  # a round trip: requests pile up behind it
        calls.append(list(items))

    commit = GroupCommit(store)
    returned: list[int] = []

    def request(n: int) -> None:
        commit.enqueue([("k", f"e{n}")])
        stored = {item for call in calls for item in call}
        assert ("k", f"e{n}") in stored  # stored before the caller goes on
        returned.append(n)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(returned) == list(range(40))
    assert sum(len(call) for call in calls) == 40
    assert len(calls) < 40  # they were grouped
    assert not commit.leading and list(commit.queue) == []


def test_a_lone_request_is_stored_at_once() -> None:
    calls: list[int] = []
    commit = GroupCommit(lambda items: calls.append(len(items)))
    commit.enqueue([("k", "a"), ("k", "b")])
    assert calls == [2]


def test_a_store_error_reaches_every_request_of_the_group_and_the_next_goes_on() -> None:
    attempts = []

    def store(items):  # type: ignore[no-untyped-def]
        attempts.append(items)
        if len(attempts) == 1:
            raise ConnectionError("redis down")

    commit = GroupCommit(store)
    with pytest.raises(ConnectionError):
        commit.enqueue([("k", "lost")])
    commit.enqueue([("k", "kept")])
    assert attempts[-1] == [("k", "kept")]


def test_groups_respect_the_size_cap() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def store(items):  # type: ignore[no-untyped-def]
        gate.wait(5)
        sizes.append(len(items))

    commit = GroupCommit(store, max_events=5)
    threads = [threading.Thread(target=commit.enqueue, args=([("k", str(n))] * 3,))
               for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert sum(sizes) == 18 and max(sizes) <= 5
