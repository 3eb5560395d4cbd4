"""Every check by name (relay.heartbeats.catalog): the routes file's and the run-time
ones, read again in the background."""

from __future__ import annotations

import logging
import threading

import fakeredis
import pytest

from relay.heartbeats.catalog import Catalog
from relay.heartbeats.config import label_matcher
from relay.heartbeats.store import Heartbeats
from relay.routes.config import RoutesFile
from relay.stack.processes import wait_until
from tests.heartbeat_fixtures import NAMES, period_check


def test_file_and_run_time_checks_by_name(caplog: pytest.LogCaptureFixture) -> None:
    store = Heartbeats(fakeredis.FakeRedis(decode_responses=True), NAMES)
    watchdog = period_check("watchdog", watchdog=(label_matcher('alertname="Watchdog"'),))
    catalog = Catalog(RoutesFile(heartbeats=(period_check("backup"), watchdog)), store)
    assert [c.name for c in catalog.all()] == ["backup", "watchdog"]  # before any read
    store.add(period_check("zeta", origin="cli"))
    store.add(period_check("alpha", origin="cli"))
    store.add(period_check("backup", period_s=5, origin="cli"))  # stored before the file had it
    with caplog.at_level(logging.WARNING):
        catalog.refresh()
    assert [c.name for c in catalog.all()] == ["backup", "watchdog", "alpha", "zeta"]
    backup = catalog.get("backup")
    assert backup is not None and (backup.origin, backup.period_s) == ("file", 60)
    assert "a run-time check of a routes-file check's name is ignored" in caplog.text
    assert catalog.get("nope") is None
    assert catalog.watchdogs() == [watchdog]


def test_run_time_checks_are_followed_in_the_background() -> None:
    store = Heartbeats(fakeredis.FakeRedis(decode_responses=True), NAMES)
    catalog = Catalog(RoutesFile(), store)
    stop = threading.Event()
    thread = catalog.follow(stop, refresh_s=0.01)
    try:
        store.add(period_check("late-comer", origin="cli"))
        wait_until(lambda: catalog.get("late-comer") is not None, 5, "the new check")
        store.remove("late-comer")
        wait_until(lambda: catalog.get("late-comer") is None, 5, "the check gone")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
