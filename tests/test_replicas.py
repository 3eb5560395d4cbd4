"""WAIT for replicas (issue 27): the ingress answers 202 only once one WAIT per
group-commit batch confirmed RELAY_MIN_REPLICAS replicas; fewer is a 503 with
Retry-After (the events may be stored). With RELAY_MIN_REPLICAS=0 no WAIT is sent. The
replicas' answer is injected (fakeredis has no WAIT)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from relay.app import create_app
from relay.errors import NotReplicated
from relay.settings import Settings
from relay.stack.processes import wait_until
from relay.store import EventStore
from tests.conftest import trigger


class Sent(list[tuple[Any, ...]]):
    answer: dict[str, int]


@pytest.fixture
def waits(monkeypatch) -> Sent:
    """Every WAIT the store sends; it answers ``waits.answer["replicas"]``."""
    sent = Sent()
    original = EventStore._command

    def command(self: EventStore, *words: Any) -> Any:
        if words and words[0] == "WAIT":
            sent.append(words)
            return answer["replicas"]
        return original(self, *words)

    answer = {"replicas": 0}
    monkeypatch.setattr(EventStore, "_command", command)
    sent.answer = answer
    return sent


def app_with(settings: Settings, fake: Any, **changes: Any) -> Any:
    return create_app(dataclasses.replace(settings, **changes), client=fake).test_client()


def test_a_202_waits_for_the_replicas_and_fewer_is_a_503(settings, fake, waits) -> None:
    client = app_with(settings, fake, min_replicas=2, replica_timeout_ms=700)
    waits.answer["replicas"] = 2
    assert client.post("/v2/enqueue", json=trigger()).status_code == 202
    assert waits == [("WAIT", 2, 700)]
    waits.answer["replicas"] = 1
    reply = client.post("/v2/enqueue", json=trigger())
    assert reply.status_code == 503, reply.json
    assert int(reply.headers["Retry-After"]) > 0
    assert "1 of 2 replicas" in " ".join(reply.json["errors"])
    assert "may be stored" in reply.json["message"]


def test_no_wait_at_all_with_min_replicas_0(settings, fake, waits) -> None:
    client = app_with(settings, fake, min_replicas=0)
    assert client.post("/v2/enqueue", json=[trigger(), trigger()]).status_code == 202
    assert waits == []


def test_one_wait_per_group_commit_batch(settings, fake, waits, monkeypatch) -> None:
    """Requests that share one store command share its WAIT: hold the first command
    until the others queued behind it, then count the WAITs."""
    waits.answer["replicas"] = 1
    gate, entered, holding = threading.Event(), threading.Event(), threading.Event()
    original = EventStore.enqueue

    def held(self: EventStore, batches: Any) -> Any:
        if holding.is_set():
            holding.clear()  # the first command only
            entered.set()
            assert gate.wait(10)
        return original(self, batches)

    monkeypatch.setattr(EventStore, "enqueue", held)
    client = app_with(settings, fake, min_replicas=1)
    client.post("/v2/enqueue", json=trigger())  # scripts loaded, slots written
    waits.clear()
    holding.set()
    statuses: list[int] = []

    def post() -> None:
        statuses.append(client.post("/v2/enqueue", json=trigger()).status_code)

    first = threading.Thread(target=post)
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=post) for _ in range(5)]
    for thread in others:
        thread.start()
    # (no bare sleep: the five are queued once the writer's pending list holds them)
    store = client.application.extensions["pd_relay_store"]
    wait_until(lambda: len(store.pending) == 5, 10, "the five requests queued")
    gate.set()
    for thread in [first, *others]:
        thread.join(10)
    assert statuses == [202] * 6
    assert len(waits) == 2  # the first request's command, then the five's together


def test_not_replicated_is_a_503_with_retry_after() -> None:
    error = NotReplicated.short(1, 2)
    assert error.status_code == 503 and error.retry_after > 0
