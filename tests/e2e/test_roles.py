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


def test_a_promoted_replica_run_again_and_restarted_stays_the_primary(tmp_path: Path) -> None:
    """Three data nodes and a Sentinel from the roles' files; the Sentinel promotes a
    replica; that host's ``stack up`` runs again (its files written again) and its Redis
    restarts, as supervisord would restart it: writes must be taken again within 10 s
    (the issue's goal for a failover), not after the Sentinels fail over a second time.
    Every host has the relay's Sentinel URL in its environment, as the README asks: the
    data node asks those Sentinels who the primary is before it starts."""
    logs = tmp_path / "logs"
    logs.mkdir()
    ports = [free_port() for _ in range(3)]
    sentinel_port = free_port()
    first = f"{HOST}:{ports[0]}"
    roles = [Roles.parse(["redis-primary", "sentinel"], announce=HOST, redis_port=ports[0],
                         sentinel_port=sentinel_port, monitor=first, quorum=1),
             *(Roles.parse(["redis-replica"], announce=HOST, redis_port=port, primary=first)
               for port in ports[1:])]
    running: dict[tuple[int, str], Process] = {}

    def up(n: int) -> None:
        workdir = tmp_path / f"host{n}"
        workdir.mkdir(exist_ok=True)
        options = replace(StackOptions.from_env({}, workdir, euid=1000), roles=roles[n])
        env = {"PD_RELAY_REDIS_PASSWORD": PASSWORD, "RELAY_MIN_REPLICAS": "1",
               "RELAY_REDIS_URL": f"redis+sentinel://:{PASSWORD}@{HOST}:{sentinel_port}/mymaster/0"}
        for program in role_programs(options, env, binaries.redis_server()):
            running[(n, program.role)] = Process(f"host{n}-{program.role}", list(program.argv),
                                                 dict(os.environ), logs)

    def node(port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, password=PASSWORD, socket_timeout=2)

    sentinel = redis.Redis(host=HOST, port=sentinel_port, socket_timeout=2,
                           decode_responses=True)

    def primary() -> int:
        return int(sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                            "mymaster")[1])

    def attempt(action: Callable[[], object]) -> bool:
        try:
            return bool(action())
        except redis.RedisError:
            return False

    try:
        for n in range(3):
            up(n)
        wait_until(lambda: attempt(lambda: sentinel.execute_command(
            "SENTINEL", "FAILOVER", "mymaster")), 30, "the Sentinel to fail over", every=0.5)
        wait_until(lambda: primary() != ports[0], 30, "a replica promoted", every=0.2)
        promoted = ports.index(primary())
        wait_until(lambda: attempt(lambda: node(ports[promoted]).set("pdr", "1")), 30,
                   "the promoted replica to take writes", every=0.2)
        running[(promoted, "redis")].kill()
        up(promoted)
        wait_until(lambda: attempt(lambda: node(primary()).set("pdr", "2")), 10,
                   "the primary the Sentinel names to take writes again", every=0.2)
    finally:
        for process in running.values():
            process.kill()
