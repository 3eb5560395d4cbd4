"""End to end: three "hosts" on loopback ports, each a Redis data node and a Sentinel
started from the files ``pd-relay stack up --role`` writes (``relay.stack.hosts``), and
the relay (ingress, worker) against their ``redis+sentinel://`` URL: an event is
delivered; the first primary's host killed (-9, Redis and Sentinel), the Sentinels
promote a replica, the relay finds it by itself, and both events are delivered, the
first once at least, in order."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import redis

from relay.stack import binaries
from relay.stack.hosts import role_programs
from relay.stack.loopback import LoopbackStack
from relay.stack.options import StackOptions
from relay.stack.processes import HOST, Process, free_port, wait_until
from relay.stack.roles import Roles
from tests.conftest import trigger

PASSWORD = "roles-data-pass"
SENTINEL_PASSWORD = "roles-sentinel-pass"


def host(workdir: Path, roles: Roles, logs: Path) -> list[Process]:
    workdir.mkdir(parents=True)
    options = replace(StackOptions.from_env({}, workdir, euid=1000), roles=roles)
    env = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
           "RELAY_MIN_REPLICAS": "1"}
    return [Process(f"{workdir.name}-{p.role}", list(p.argv), dict(os.environ), logs)
            for p in role_programs(options, env, binaries.redis_server())]


def test_the_relay_delivers_through_the_roles_and_across_a_failover(
        tmp_path: Path, make_stack: Callable[..., LoopbackStack]) -> None:
    logs = tmp_path / "role-logs"
    logs.mkdir()
    redis_ports = [free_port() for _ in range(3)]
    sentinel_ports = [free_port() for _ in range(3)]
    first = f"{HOST}:{redis_ports[0]}"
    hosts: list[list[Process]] = []
    try:
        for n in range(3):
            data = "redis-primary" if n == 0 else "redis-replica"
            roles = Roles.parse([data, "sentinel"], announce=HOST, redis_port=redis_ports[n],
                                sentinel_port=sentinel_ports[n], primary=first,
                                monitor=first, quorum=2)
            hosts.append(host(tmp_path / f"host{n}", roles, logs))
        sentinels = [redis.Redis(host=HOST, port=p, password=SENTINEL_PASSWORD,
                                 socket_timeout=2, decode_responses=True)
                     for p in sentinel_ports]

        def primary(sentinel: redis.Redis) -> int:
            found = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
            return int(found[1])

        def ready() -> bool:
            replicas = sentinels[0].execute_command("SENTINEL", "REPLICAS", "mymaster")
            peers = sentinels[0].execute_command("SENTINEL", "SENTINELS", "mymaster")
            return len(replicas) == 2 and len(peers) == 2
        wait_until(ready, 30, "the Sentinels to know both replicas and each other", every=0.2)

        hosts_list = ",".join(f"{HOST}:{p}" for p in sentinel_ports)
        url = f"redis+sentinel://:{PASSWORD}@{hosts_list}/mymaster/0"
        stack = make_stack(keys=1, RELAY_REDIS_URL=url, RELAY_SENTINEL_PASSWORD=SENTINEL_PASSWORD)
        stack.start_simulator()
        stack.start_ingress()
        stack.start_workers()
        assert stack.post(trigger("before", dedup_key="roles-1")).status_code == 202
        wait_until(lambda: len(stack.delivered()) == 1, 20, "the first event's delivery")

        for process in hosts[0]:  # the primary's host: Redis and Sentinel, kill -9
            process.kill()
        wait_until(lambda: primary(sentinels[1]) != redis_ports[0], 60,
                   "the Sentinels to promote a replica", every=0.5)

        def accepted() -> bool:
            return bool(stack.post(trigger("after", dedup_key="roles-2")).status_code == 202)
        wait_until(accepted, 30, "the ingress to take an event again", every=0.5)
        wait_until(lambda: {e["dedup_key"] for e in stack.delivered()} >=
                   {"roles-1", "roles-2"}, 30, "the second event's delivery")
        keys = [e["dedup_key"] for e in stack.delivered()]
        assert keys.index("roles-1") < len(keys) - 1 - keys[::-1].index("roles-2")
    finally:
        for processes in hosts:
            for process in processes:
                process.kill()
