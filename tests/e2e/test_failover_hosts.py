"""The failover drill's three hosts (scripts/failover_hosts.py), root only: Redis with two
replicas, three Sentinels and the relay, each in its own network namespace; an event sent
to one host's ingress reaches the simulator in the world namespace, and closing removes
every namespace and process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

from relay.stack import netns
from relay.stack.processes import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from failover_hosts import Cluster  # noqa: E402

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]


def test_three_hosts_deliver_and_leave_nothing_behind(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, limit=100, window_s=10)
    try:
        cluster.net.up()
        with netns.inside(cluster.net.world):
            cluster.start()
            assert cluster.primary() == cluster.hosts[0]
            assert [cluster.role(h) for h in cluster.hosts] == ["master", "slave", "slave"]
            reply = requests.post(cluster.ingress_urls([cluster.hosts[2]])[0] + "/v2/enqueue",
                                  json={"event_action": "trigger", "dedup_key": "e2e-1",
                                        "payload": {"summary": "s", "source": "drill",
                                                    "severity": "info"}}, timeout=10)
            assert reply.status_code == 202, reply.text
            wait_until(lambda: any(e["dedup_key"] == "e2e-1" and e["status"] == 202
                                   for e in cluster.sim_get("events")["events"]), 30,
                       "the event at the simulator")
            processes = [p for ps in cluster.net.processes.values() for p in ps]
            assert len(processes) == 1 + 4 * 3  # the simulator; Redis, Sentinel, relay x2
    finally:
        cluster.close()
    assert all(p.popen.poll() is not None for p in processes)
    assert not {cluster.net.world, *cluster.hosts} & set(netns.namespaces())
    # the password is in the files only the owner reads, never in a command line
    assert all((tmp_path / h.split("-")[1] / "redis.conf").stat().st_mode & 0o077 == 0
               for h in cluster.hosts)
    assert not any(cluster.password in " ".join(p.popen.args) for p in processes)
