"""The heartbeats' evaluator with its real sender (relay.heartbeats.pages) and in the
channel worker's thread (relay.channels.worker.evaluate), on fakeredis: a full queue keeps
the page in the outbox until there is room, in order; the thread evaluates, pages, and
stops with the worker, releasing its lease."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from relay.channels import worker
from relay.heartbeats.catalog import Catalog
from relay.heartbeats.evaluator import Evaluator
from relay.heartbeats.model import Check
from relay.heartbeats.pages import Pages
from relay.heartbeats.store import Heartbeats
from relay.keys import key_id
from relay.names import Names
from relay.routes.config import RoutesFile
from relay.settings import Settings
from relay.stack.processes import wait_until
from relay.store import Record
from tests.heartbeat_fixtures import Clock

NAMES = Names("pdr")
BACKUP = Check("backup", grace_s=30, period_s=60, keys=("db",))
NIGHTLY = Check("nightly", grace_s=30, period_s=60, keys=("db",))


@pytest.fixture
def settings(tmp_path: Path, keys: tuple[str, ...]) -> Settings:
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n{keys[1]} ops\n")
    return Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt")})


def queued(fake, settings: Settings) -> list[tuple[str, str]]:
    kid = key_id(settings.routing_keys[0])
    return [(e["dedup_key"], e["event_action"]) for e in
            (Record.decode(raw).event for raw in fake.lrange(NAMES.queue(kid), 0, -1))]


def evaluating(fake, settings: Settings, routes: RoutesFile, what: str,
               extra: Callable[[], object] = lambda: None) -> bool:
    """Run the channel worker's evaluator thread until a page is queued (and ``extra``
    asked while it runs), then stop it; whether it ended."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.evaluate, daemon=True,
                              args=(fake, NAMES, settings, routes, stop, 0.01))
    thread.start()
    try:
        wait_until(lambda: queued(fake, settings), 10, what)
        extra()
    finally:
        stop.set()
        thread.join(10)
    return not thread.is_alive()


def test_a_full_queue_keeps_the_pages_in_the_outbox_in_order_until_there_is_room(
        fake, settings: Settings) -> None:
    clock = Clock()
    routes = RoutesFile(heartbeats=(BACKUP, NIGHTLY))
    full = replace(settings, queue_max_events=1)
    store = Heartbeats(fake, NAMES, clock=clock)
    evaluator = Evaluator(fake, NAMES, Catalog(routes, None),
                          Pages(fake, NAMES, full, routes).send, clock=clock,
                          watch_ingress=False, gap_s=1e6)
    kid = key_id(settings.routing_keys[0])
    fake.rpush(NAMES.queue(kid), Record("alert", {"event_action": "trigger",
                                                  "dedup_key": "disk"}, 0).encode())
    store.ping(BACKUP, "fail")  # down at once: its trigger in the outbox
    store.ping(NIGHTLY, "fail")
    store.ping(BACKUP, "success")  # up again: its resolve after the trigger
    assert evaluator.round() == 0  # the queue is full: nothing sent, nothing lost
    assert [p.name for _raw, p in store.pages(10)] == ["backup", "nightly", "backup"]
    fake.delete(NAMES.queue(kid))  # the worker sent it
    assert evaluator.round() == 1  # room for one: the oldest page first
    assert queued(fake, settings) == [("heartbeat:backup", "trigger")]
    fake.delete(NAMES.queue(kid))
    assert evaluator.round() == 1
    fake.delete(NAMES.queue(kid))
    assert evaluator.round() == 1
    assert queued(fake, settings) == [("heartbeat:backup", "resolve")]
    assert store.pages(10) == []


def test_the_channel_workers_evaluator_pages_and_stops_releasing_its_lease(
        fake, settings: Settings) -> None:
    Heartbeats(fake, NAMES).ping(BACKUP, "fail")

    def holding() -> None:
        assert fake.get(NAMES.heartbeat_lease)

    assert evaluating(fake, settings, RoutesFile(heartbeats=(BACKUP,)), "the trigger stored",
                      holding)
    assert fake.get(NAMES.heartbeat_lease) is None  # the next worker evaluates at once
    assert queued(fake, settings) == [("heartbeat:backup", "trigger")]


def test_a_run_time_checks_page_waits_for_the_checks_to_be_read(fake, settings: Settings,
                                                                 monkeypatch) -> None:
    """The evaluator drops a page of a check it does not know: the thread reads the
    run-time checks (Redis down: again until it can) before its first round."""
    run_time = replace(BACKUP, name="added", origin="cli")
    store = Heartbeats(fake, NAMES)
    store.add(run_time)
    store.ping(run_time, "fail")
    failures = [1]
    real = Heartbeats.stored_checks

    def flaky(self: Heartbeats) -> list[Check]:
        if failures:
            failures.pop()
            import redis
            raise redis.ConnectionError("Redis is starting")
        return real(self)

    monkeypatch.setattr(Heartbeats, "stored_checks", flaky)
    evaluating(fake, settings, RoutesFile(), "the run-time check's trigger")
    assert queued(fake, settings) == [("heartbeat:added", "trigger")]


def test_an_evaluator_that_fails_is_started_again(fake, settings: Settings, monkeypatch,
                                                  caplog) -> None:
    """An error no round expects (a page the outbox holds in a newer format, a bug) must
    not end the thread: the checks would go unwatched, silently."""
    real, failures = Evaluator.run, [1]

    def flaky(self: Evaluator, stop: threading.Event) -> None:
        if failures:
            failures.pop()
            raise ValueError("a page this release cannot read")
        real(self, stop)

    monkeypatch.setattr(Evaluator, "run", flaky)
    Heartbeats(fake, NAMES).ping(BACKUP, "fail")
    evaluating(fake, settings, RoutesFile(heartbeats=(BACKUP,)), "the trigger after a restart")
    assert "the evaluator failed; starting it again" in caplog.text
