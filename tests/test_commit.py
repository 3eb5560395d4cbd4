"""Group commit: every request is stored before it returns, errors reach each request."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from relay.commit import Batch, GroupCommit


def flat(store: Any) -> Any:
    """A store given every request's items in one list (most tests need no more)."""
    def given_batches(batches: list[Batch]) -> Any:
        return store([item for batch in batches for item in batch])
    return given_batches


def test_the_store_is_given_each_requests_batch_apart_and_answers_each_item() -> None:
    gate = threading.Event()
    calls: list[list[list[str]]] = []

    def store(batches):  # type: ignore[no-untyped-def]
        gate.wait(5)
        calls.append([list(batch) for batch in batches])
        return [f"{len(batch)}:{item}" for batch in batches for item in batch]

    commit = GroupCommit(store)
    first, [(one, one_outcome), (two, two_outcome)] = _behind_a_first_call(
        commit, ["a", "b"], ["c"])
    gate.set()
    for thread in (first, one, two):
        thread.join(5)
    assert calls[-1] == [["a", "b"], ["c"]]
    assert one_outcome == ["stored"] and two_outcome == ["stored"]


def test_concurrent_requests_share_store_calls_and_each_is_stored() -> None:
    calls: list[list[tuple[str, str]]] = []

    def store(items):  # type: ignore[no-untyped-def]
        time.sleep(0.01)  # a round trip: requests pile up behind it
        calls.append(list(items))

    commit = GroupCommit(flat(store))
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
    assert commit.busy_since is None and list(commit.pending) == []


def test_a_lone_request_is_stored_at_once() -> None:
    calls: list[int] = []
    commit = GroupCommit(flat(lambda items: calls.append(len(items))))
    commit.enqueue([("k", "a"), ("k", "b")])
    assert calls == [2]


def test_a_store_error_reaches_every_request_of_the_group_and_the_next_goes_on() -> None:
    attempts = []

    def store(items):  # type: ignore[no-untyped-def]
        attempts.append(items)
        if len(attempts) == 1:
            raise ConnectionError("redis down")

    commit = GroupCommit(flat(store))
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

    commit = GroupCommit(flat(store), max_events=5)
    threads = [threading.Thread(target=commit.enqueue, args=([("k", str(n))] * 3,))
               for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert sum(sizes) == 18 and max(sizes) <= 5


def _run(target, *args):  # type: ignore[no-untyped-def]
    """Start ``target(*args)`` in a thread; return (thread, outcome list)."""
    outcome: list[object] = []

    def body() -> None:
        try:
            target(*args)
            outcome.append("stored")
        except Exception as exc:  # the outcome is what the test checks
            outcome.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, outcome


def _wait_for(check, what: str, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _behind_a_first_call(commit: GroupCommit, *batches: list[tuple[str, str]],
                         timeouts: tuple[float, ...] = (5.0, 5.0)) -> tuple[Any, list[Any]]:
    """Hand in ("k", "first") and, while the writer stores it, each of ``batches``: they
    wait together for the writer's next call. Return the threads and outcomes."""
    first, _ = _run(commit.enqueue, [("k", "first")], 5.0)
    _wait_for(lambda: commit.busy_since is not None, "the first store call")
    runs = [_run(commit.enqueue, batch, timeout)
            for batch, timeout in zip(batches, timeouts, strict=True)]
    _wait_for(lambda: len(commit.pending) == len(batches), "the requests to wait together")
    return first, runs


def test_a_request_that_gives_up_waiting_never_wedges_the_node() -> None:
    """A store call slower than a waiter's timeout: the waiter is told its events were not
    stored (and they never are), and requests after the stall are stored again."""
    stored: list[str] = []
    gate = threading.Event()

    def store(items):  # type: ignore[no-untyped-def]
        if ("k", "slow") in items:
            gate.wait(10)
        stored.extend(raw for _, raw in items)

    commit = GroupCommit(flat(store))
    slow, slow_outcome = _run(commit.enqueue, [("k", "slow")], 5.0)
    _wait_for(lambda: commit.busy_since is not None, "the slow store call")
    waiter, waiter_outcome = _run(commit.enqueue, [("k", "gave-up")], 0.05)
    waiter.join(5)
    assert waiter_outcome and isinstance(waiter_outcome[0], TimeoutError)
    gate.set()
    slow.join(5)
    assert slow_outcome == ["stored"]
    later, later_outcome = _run(commit.enqueue, [("k", "later")], 2.0)
    later.join(5)
    assert later_outcome == ["stored"], later_outcome
    assert stored == ["slow", "later"]  # the withdrawn request was never stored


def test_a_request_carried_by_a_slow_store_call_is_told_the_truth() -> None:
    """Its wait runs out while the command carrying its events is still under way: the
    command's verdict (stored) is what it answers, not a 503."""
    first_gate, slow_gate = threading.Event(), threading.Event()
    stored: list[str] = []

    def store(items):  # type: ignore[no-untyped-def]
        (first_gate if ("k", "first") in items else slow_gate).wait(10)
        stored.extend(raw for _, raw in items)

    commit = GroupCommit(flat(store))
    first, [(other, _), (carried, outcome)] = _behind_a_first_call(
        commit, [("k", "other")], [("k", "carried")], timeouts=(5.0, 0.2))
    first_gate.set()  # the next command carries both waiting requests, and is slow
    carried.join(1.0)  # its wait runs out while that command is under way
    slow_gate.set()
    for thread in (first, other, carried):
        thread.join(5)
    assert stored == ["first", "other", "carried"]
    assert outcome == ["stored"]


def test_an_error_that_is_not_redis_fails_only_the_request_that_caused_it() -> None:
    gate = threading.Event()
    stored: list[str] = []

    def store(items):  # type: ignore[no-untyped-def]
        if ("k", "first") in items:
            gate.wait(10)
        if any(raw == "poison" for _, raw in items):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        stored.extend(raw for _, raw in items)

    commit = GroupCommit(flat(store))
    first, [(bad, bad_outcome), (good, good_outcome)] = _behind_a_first_call(
        commit, [("k", "poison")], [("k", "good")])
    gate.set()
    for thread in (first, bad, good):
        thread.join(5)
    assert good_outcome == ["stored"] and "good" in stored
    assert isinstance(bad_outcome[0], UnicodeEncodeError) and "poison" not in stored


def test_a_redis_error_fails_every_request_its_command_carried() -> None:
    import redis

    def store(items):  # type: ignore[no-untyped-def]
        raise redis.ConnectionError("redis down")

    commit = GroupCommit(flat(store))
    with pytest.raises(redis.ConnectionError):
        commit.enqueue([("k", "a")], 2.0)
