"""Hosts made of Linux network namespaces joined by a bridge (root only), for the
failover drill (``scripts/drill --only failover``).

``Network`` makes one namespace per host (``pdr-h1-<pid>``, ...) and one for the world
outside (``pdr-world-<pid>``: the bridge lives there, with the PagerDuty simulator and the
load clients), each with its loopback up; each host's ``eth0`` is a veth whose other end
is a port of the bridge. Every address is private and exists only inside those
namespaces; the names carry the drill's pid, so two runs never meet, and namespaces
left behind by a run that was killed -9 (its pid gone) are removed by the next one.
``close`` (also at exit) kills every process in them and removes them.

A thread joins a namespace with ``enter`` (``setns(2)`` acts on the calling thread only),
and ``inside`` lends it one for a block: the drill's load clients are threads of its own
process, in the world or in a host.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relay.stack.processes import Process, wait_until

CLONE_NEWNET = 0x40000000
RUN = Path("/run/netns")
SUBNET = "10.27.0"  # host i is SUBNET.i, the world's end of the bridge SUBNET.254
WORLD_ADDRESS = f"{SUBNET}.254"
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> str:
    """Run ``ip`` (bounded); raise with its message when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def enter(name: str) -> None:
    """Move the calling thread into namespace ``name`` for good."""
    _setns(str(RUN / name))


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run a block of the calling thread in namespace ``name``, then go back."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter(name)
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(back)


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def pids(name: str) -> list[int]:
    """The processes whose network namespace is ``name``."""
    try:
        return [int(p) for p in ip("netns", "pids", name).split()]
    except RuntimeError:
        return []


def remove_stale() -> list[str]:
    """Remove the drill's namespaces whose run (the pid in their name) is gone."""
    removed = []
    for name in namespaces():
        found = re.fullmatch(r"pdr-(?:h\d+|world)-(\d+)", name)
        if found and not Path(f"/proc/{found[1]}").exists():
            _remove(name)
            removed.append(name)
    return removed


def _remove(name: str) -> None:
    for pid in pids(name):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        ip("netns", "del", name)
    except RuntimeError:
        pass


class Network:
    """``hosts`` namespaces on one bridge in a world namespace; see the module."""

    def __init__(self, hosts: int = 3, suffix: str | None = None) -> None:
        suffix = suffix or str(os.getpid())
        self.world = f"pdr-world-{suffix}"
        self.hosts = [f"pdr-h{i}-{suffix}" for i in range(1, hosts + 1)]
        self.made: list[str] = []
        self.processes: dict[str, list[Process]] = {}

    def address(self, host: str) -> str:
        return f"{SUBNET}.{self.hosts.index(host) + 1}"

    def port(self, host: str) -> str:
        """The bridge's port for ``host`` (in the world namespace)."""
        return f"port{self.hosts.index(host) + 1}"

    def up(self) -> Network:
        atexit.register(self.close)
        remove_stale()
        try:
            for name in [self.world, *self.hosts]:
                ip("netns", "add", name)
                self.made.append(name)
                ip("-n", name, "link", "set", "lo", "up")
            ip("-n", self.world, "link", "add", "br0", "type", "bridge")
            ip("-n", self.world, "addr", "add", f"{WORLD_ADDRESS}/24", "dev", "br0")
            ip("-n", self.world, "link", "set", "br0", "up")
            for host in self.hosts:
                port = self.port(host)
                ip("-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                   "netns", self.world)
                ip("-n", host, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
                ip("-n", host, "link", "set", "eth0", "up")
                ip("-n", self.world, "link", "set", port, "master", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def start(self, host: str, name: str, argv: list[str], env: dict[str, str],
              logs: Path, stop_signal: int = signal.SIGKILL) -> Process:
        """A process in ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        process = Process(name, ["ip", "netns", "exec", host, *argv], env, logs, stop_signal)
        self.processes.setdefault(host, []).append(process)
        return process

    def cut(self, host: str) -> None:
        """Take ``host``'s link to the bridge down (its processes keep running)."""
        ip("-n", self.world, "link", "set", self.port(host), "down")

    def heal(self, host: str) -> None:
        """Bring ``host``'s link back; return once both ends carry and the bridge
        forwards (bounded): until then a packet to it is dropped."""
        ip("-n", self.world, "link", "set", self.port(host), "up")
        wait_until(lambda: "LOWER_UP" in ip("-n", host, "-o", "link", "show", "eth0")
                   and "state forwarding" in ip("-n", self.world, "-d", "-o", "link", "show",
                                                self.port(host)), 5, f"{host}'s link")

    def kill(self, host: str) -> int:
        """kill -9 every process of ``host`` and take its link down; how many died."""
        victims = [p for p in self.processes.get(host, []) if p.alive()]
        for process in victims:
            process.popen.send_signal(signal.SIGKILL)
        others = [pid for pid in pids(host) if pid != os.getpid()]
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in victims:
            process.popen.wait(5)
        self.cut(host)
        return len(victims) + len({*others} - {p.popen.pid for p in victims})

    def close(self) -> None:
        """Stop every process and remove every namespace (again: a no-op)."""
        for processes in self.processes.values():
            for process in processes:
                process.stop()
        self.processes.clear()
        while self.made:
            _remove(self.made.pop())
        atexit.unregister(self.close)
