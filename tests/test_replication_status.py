"""What status and check say of replication (issue 27), from a primary's INFO
replication: the primary, replicas in sync of those known, each one's lag in bytes and
seconds, the Sentinels' view; too few in sync is not ``enough``."""

from __future__ import annotations

from relay.replication import format_replication, summarize

INFO = {
    "role": "master", "connected_slaves": 2, "master_repl_offset": 5000,
    "slave0": {"ip": "127.0.0.1", "port": 6380, "state": "online", "offset": 5000, "lag": 0},
    "slave1": {"ip": "127.0.0.1", "port": 6381, "state": "online", "offset": 3800, "lag": 12},
    "slave_read_only": 1,  # not a replica's line
}
VIEW = {"service": "mymaster", "named": 3, "answering": 2, "known": 3, "quorum": 2}


def test_replicas_in_sync_their_lag_and_the_sentinels_view() -> None:
    figures = summarize(INFO, "127.0.0.1:6379", VIEW, min_replicas=1)
    assert figures["replicas_known"] == 2 and figures["replicas_in_sync"] == 1
    assert figures["enough"]
    assert [(r["address"], r["lag_bytes"], r["lag_seconds"], r["in_sync"])
            for r in figures["replicas"]] == [("127.0.0.1:6380", 0, 0, True),
                                              ("127.0.0.1:6381", 1200, 12, False)]
    text = format_replication(figures)
    assert text.splitlines()[0] == (
        "Redis primary 127.0.0.1:6379 (service mymaster: 2 of 3 Sentinels answer, 3 known, "
        "quorum 2): 1 of 2 replica(s) in sync, RELAY_MIN_REPLICAS=1")
    assert "replica 127.0.0.1:6381 online: 1200 bytes behind, last confirmed 12s ago " \
           "(not in sync)" in text


def test_fewer_in_sync_than_min_replicas_is_not_enough() -> None:
    assert not summarize(INFO, "127.0.0.1:6379", None, min_replicas=2)["enough"]
    lone = summarize({"role": "master", "master_repl_offset": 10}, "h:1", None, 1)
    assert lone["replicas_known"] == 0 and not lone["enough"]
