"""End to end: the loopback harness of a replicated Redis under Sentinel
(``relay.stack.sentinels``): a primary, 2 replicas and 3 Sentinels (quorum 2); a kill -9 of
the primary and a SENTINEL FAILOVER each make a replica the primary, and the data written
before (and seen by a replica) is on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.stack.processes import wait_until
from relay.stack.sentinels import SentinelGroup


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    made = SentinelGroup(tmp_path / "group", tmp_path / "logs", password="p4ss",
                         sentinel_password="s3nt")
    try:
        made.start()
        yield made
    finally:
        made.stop()


def test_a_kill_9_of_the_primary_makes_a_replica_the_primary_with_the_data(
        group: SentinelGroup) -> None:
    first = group.primary()
    assert first[1] == group.first_primary and group.in_sync(first[1]) == 2
    client = group.node(first[1])
    client.set("before", "kept")
    assert client.wait(2, 2000) == 2
    assert group.kill_primary() == first[1]
    new = group.wait_failover(first, 30)
    assert new != first and group.node(new[1]).get("before") == "kept"
    # the old primary comes back as a replica of the new one
    group.start_node(first[1])
    wait_until(lambda: group.node(first[1]).role()[0] == "slave", 30,
               "the old primary to come back as a replica")
    assert group.url.startswith("redis+sentinel://:p4ss@127.0.0.1:")


def test_sentinel_failover_moves_the_primary(group: SentinelGroup) -> None:
    first = group.primary()
    new = group.failover()
    assert new != first and group.node(first[1]).role()[0] == "slave"
