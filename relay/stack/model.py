"""The processes of a stack, described once: supervisord's configuration (native mode),
the compose override (docker mode) and the loopback stacks of the tests, benchmarks and
drills are all written from these commands.

A program's ``fingerprint`` covers everything it reads at start (command line,
environment, and for ingress nodes the keys file): when it changes, ``pd-relay stack
up`` restarts that program, and only that one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relay.keys import KeysFile

INGRESS, WORKER, REDIS, NGINX, SIMULATOR = "ingress", "worker", "redis", "nginx", "simulator"
CHANNELS = "channel-worker"
SENTINEL = "sentinel"  # a host's Redis Sentinel (relay/stack/roles.py)
EXPORTER = "history-exporter"  # the history's record in PostgreSQL (RELAY_HISTORY_DSN)


def ingress_args(host: str, port: int) -> list[str]:
    return ["ingress", "--host", host, "--port", str(port)]


def ingress_socket_args(path: Path) -> list[str]:
    """A node on a Unix socket (the native stack's, in its private run directory)."""
    return ["ingress", "--unix-socket", str(path)]


def worker_args(kid: str) -> list[str]:
    """A worker for one key names it by id: the key itself never appears in ``ps``."""
    return ["worker", "--key-id", kid]


def workers_args(i: int, n: int) -> list[str]:
    """Worker process ``i`` of ``n`` (1-based): every key, its own share's leases first
    (``worker.fleet``); one process alone needs no share."""
    return ["worker", "--keys", "all"] + (["--prefer", f"{i}/{n}"] if n > 1 else [])


def channel_worker_args() -> list[str]:
    return ["channel-worker"]


def exporter_args() -> list[str]:
    """The exporter's command line: its PostgreSQL (password and all) comes in its
    environment (RELAY_HISTORY_DSN), never in ``ps``."""
    return ["history-exporter"]


def simulator_args(host: str, port: int, limit: int | None = None,
                   window_s: float | None = None) -> list[str]:
    args = ["simulator", "--host", host, "--port", str(port)]
    if limit is not None:
        args += ["--limit", str(limit)]
    if window_s is not None:
        args += ["--window-s", str(window_s)]
    return args


@dataclass(frozen=True)
class Program:
    name: str
    role: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict, hash=False)
    socket: Path | None = None  # native ingress nodes: where /readyz answers

    @property
    def fingerprint(self) -> str:
        text = json.dumps([self.argv, sorted(self.env.items())])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def keys_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def relay_programs(pd_relay: list[str], env: dict[str, str], keys: KeysFile, keys_file: Path,
                   nodes: Sequence[int | Path], sim_port: int | None,
                   host: str = "127.0.0.1", workers: int = 2) -> list[Program]:
    """The relay's own processes: the simulator (demo), the ingress nodes (each on a Unix
    socket, or a TCP port on ``host``; they read the
    whole keys file, so its digest is in their environment), ``workers`` worker
    processes each serving every key (the keys file is not in their fingerprint: they
    read it again on SIGHUP, so a new key restarts none of them) and the channel worker,
    for channels and housekeeping (it reads the routes file at start only, so its digest
    is in its environment: a changed file restarts it). With ``RELAY_HISTORY_DSN``, the
    history's exporter too (``pd-relay history-exporter``)."""
    programs = []
    if sim_port is not None:
        programs.append(Program(SIMULATOR, SIMULATOR,
                                tuple(pd_relay + simulator_args(host, sim_port))))
    ingress_env = dict(env, PD_RELAY_KEYS_DIGEST=keys_digest(keys_file))
    for n, node in enumerate(nodes):
        if isinstance(node, Path):
            programs.append(Program(f"ingress-{n}", INGRESS,
                                    tuple(pd_relay + ingress_socket_args(node)), ingress_env,
                                    node))
        else:
            programs.append(Program(f"ingress-{n}", INGRESS,
                                    tuple(pd_relay + ingress_args(host, node)), ingress_env))
    for i in range(1, workers + 1):
        programs.append(Program(f"worker-{i}", WORKER, tuple(pd_relay + workers_args(i, workers)),
                                env))
    routes = env.get("RELAY_ROUTES_FILE")
    digest = {"PD_RELAY_ROUTES_DIGEST": keys_digest(Path(routes))} \
        if routes and Path(routes).exists() else {}
    programs.append(Program(CHANNELS, CHANNELS, tuple(pd_relay + channel_worker_args()),
                            dict(env, **digest)))
    if env.get("RELAY_HISTORY_DSN"):
        programs.append(Program(EXPORTER, EXPORTER, tuple(pd_relay + exporter_args()), env))
    return programs
