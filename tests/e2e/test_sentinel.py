"""End to end: the loopback harness of a replicated Redis under Sentinel
(``relay.stack.sentinels``): a primary, 2 replicas and 3 Sentinels (quorum 2); a kill -9 of
the primary and a SENTINEL FAILOVER each make a replica the primary, and the data written
before (and seen by a replica) is on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from relay.sentinel import moved
from relay.settings import Settings
from relay.stack.processes import HOST, wait_until
from relay.stack.sentinels import SentinelGroup
from relay.store import connect


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


def test_a_relay_client_reaches_the_new_primary_by_itself(group: SentinelGroup) -> None:
    """relay.store.connect with the group's URL: after SENTINEL FAILOVER (the old primary
    alive, now a replica) a script's write reaches the new primary (Redis 6 wraps its
    READONLY in a script error), and a subscriber learns it is on the old one; after a
    kill -9 of the primary, the next commands reach the new one."""
    settings = Settings(redis_url=group.url, sentinel_password=group.sentinel_password)
    client = connect(settings)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    assert script(keys=["n"]) == 1
    pubsub = client.pubsub()
    pubsub.subscribe("ch")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert not moved(client, pubsub.connection)
    first = group.primary()
    new = group.failover()
    assert wait_until(lambda: _try(lambda: script(keys=["n"])), 15,
                      "a script's write to succeed") == 2
    assert client.connection_pool.get_master_address() == new
    assert moved(client, pubsub.connection)
    assert group.node(first[1]).get("n") in ("1", "2")  # a replica: never written itself
    group.kill_primary()
    group.wait_failover(new, 30)
    assert wait_until(lambda: _try(lambda: script(keys=["n"])), 30,
                      "a write after the kill -9") == 3
    pubsub.close()
    client.close()


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except redis.RedisError:
        return None


def test_a_script_refused_by_a_replica_sends_the_client_back_to_the_sentinels(
        group: SentinelGroup) -> None:
    """Sentinel drops the clients of a primary it demotes, but a client that still
    reaches a replica (a node made one by hand, or cut off from the Sentinels) must not
    take a script's READONLY (Redis 6 wraps it in a script error) as final: the
    connection is dropped, and the next command sent on it (as EventStore sends on the
    connection it holds) asks the Sentinels again rather than dialling the old address."""
    client = connect(Settings(redis_url=group.url,
                              sentinel_password=group.sentinel_password))
    connection = client.connection_pool.get_connection()
    connection.disconnect()
    connection.connect_to((HOST, group.replicas()[0]))
    connection.send_command("EVAL", "return redis.call('SET', 'k', 'v')", 0)
    with pytest.raises(redis.ConnectionError):
        connection.read_response()
    connection.send_command("EVAL", "return redis.call('SET', 'k', 'v')", 0)  # reconnects
    assert connection.read_response() == "OK" and connection.port == group.primary()[1]
    connection.disconnect()
    client.close()
