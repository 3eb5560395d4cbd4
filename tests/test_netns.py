"""The failover drill's hosts (relay.stack.netns): namespaces joined by a bridge, made and
removed by the test itself (root only), with processes started, cut off and killed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relay.stack.processes import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

from relay.stack import netns  # noqa: E402


def serve(net: netns.Network, host: str, logs: Path) -> str:
    """A web server on ``host``'s address (port 8000); its URL once it answers."""
    net.start(host, f"http-{host}", [sys.executable, "-m", "http.server", "--bind",
                                    net.address(host), "8000"], dict(os.environ), logs)
    url = f"http://{net.address(host)}:8000/"
    with netns.inside(net.world):
        wait_until(lambda: requests.get(url, timeout=1).ok, 10, "the web server")
    return url


def reaches(net: netns.Network, where: str, url: str) -> bool:
    with netns.inside(where):
        try:
            return requests.get(url, timeout=0.5).ok
        except requests.RequestException:
            return False


@pytest.fixture
def net(tmp_path: Path):
    network = netns.Network(suffix=f"{os.getpid()}").up()
    yield network
    network.close()


def test_hosts_reach_each_other_over_the_bridge_and_only_inside(net, tmp_path: Path) -> None:
    url = serve(net, net.hosts[1], tmp_path)
    assert reaches(net, net.hosts[0], url)
    assert reaches(net, net.world, url)
    assert not reaches(net, net.hosts[0], "http://127.0.0.1:8000/")  # its own loopback
    assert netns.SUBNET not in subprocess.run(["ip", "addr"], capture_output=True,
                                              text=True).stdout  # nothing in the root's


def test_a_cut_host_runs_on_alone_until_healed(net, tmp_path: Path) -> None:
    url = serve(net, net.hosts[0], tmp_path)
    net.cut(net.hosts[0])
    assert not reaches(net, net.hosts[1], url)
    assert reaches(net, net.hosts[0], url)  # it still answers itself
    net.heal(net.hosts[0])
    with netns.inside(net.hosts[1]):
        wait_until(lambda: requests.get(url, timeout=0.5).ok, 10, "the healed link")


def test_kill_ends_every_process_of_a_host_and_its_link(net, tmp_path: Path) -> None:
    url = serve(net, net.hosts[0], tmp_path)
    other = serve(net, net.hosts[1], tmp_path)
    stray = subprocess.Popen(["ip", "netns", "exec", net.hosts[0], "sleep", "60"])
    wait_until(lambda: stray.pid in netns.pids(net.hosts[0]), 5, "the stray process")
    assert net.kill(net.hosts[0]) == 2
    assert stray.wait(5) == -9
    assert netns.pids(net.hosts[0]) == []
    assert not reaches(net, net.hosts[1], url)
    assert reaches(net, net.world, other)  # the other hosts live on


def test_close_removes_everything_and_a_second_close_does_nothing(tmp_path: Path) -> None:
    net = netns.Network(suffix=f"{os.getpid()}c").up()
    serve(net, net.hosts[2], tmp_path)
    process = net.processes[net.hosts[2]][0]
    net.close()
    assert process.popen.poll() is not None
    assert not {net.world, *net.hosts} & set(netns.namespaces())
    net.close()


def test_a_failed_set_up_removes_what_it_made(monkeypatch) -> None:
    net = netns.Network(suffix=f"{os.getpid()}f")
    real = netns.ip

    def failing(*args: str) -> str:
        if "bridge" in args:
            raise RuntimeError("no bridge today")
        return real(*args)

    monkeypatch.setattr(netns, "ip", failing)
    with pytest.raises(RuntimeError, match="no bridge"):
        net.up()
    assert not {net.world, *net.hosts} & set(netns.namespaces())


def test_namespaces_of_a_run_that_died_are_removed_by_the_next() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"pdr-h1-{dead.pid}"
    netns.ip("netns", "add", name)
    try:
        assert name in netns.remove_stale()
        assert name not in netns.namespaces()
    finally:
        if name in netns.namespaces():
            netns.ip("netns", "del", name)


LISTEN = ("import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 9000)); s.listen(); "
          "[s.accept() for _ in iter(int, 1)]")


def answers(net: netns.Network, host: str) -> bool:
    """Whether a connection from the world to ``host``'s listener is taken."""
    import socket

    with netns.inside(net.world), socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((net.address(host), 9000)) == 0


class Hosts(RuleBasedStateMachine):
    """Cut, heal and kill hosts in any order: the world reaches exactly the hosts whose
    link is up and whose processes live, a killed host has no process left, and close
    leaves no namespace."""

    def __init__(self) -> None:
        super().__init__()
        self.logs = Path(tempfile.mkdtemp(prefix="pdr-netns-"))
        self.net = netns.Network(suffix=f"{os.getpid()}s").up()
        for host in self.net.hosts:
            self.net.start(host, f"listen-{host}", [sys.executable, "-c", LISTEN,
                                                   self.net.address(host)],
                           dict(os.environ), self.logs)
        self.link = dict.fromkeys(self.net.hosts, True)
        self.alive = dict.fromkeys(self.net.hosts, True)
        for host in self.net.hosts:
            wait_until(lambda h=host: answers(self.net, h), 10, "a listener")

    @rule(n=st.integers(0, 2))
    def cut(self, n: int) -> None:
        self.net.cut(self.net.hosts[n])
        self.link[self.net.hosts[n]] = False

    @rule(n=st.integers(0, 2))
    def heal(self, n: int) -> None:
        self.net.heal(self.net.hosts[n])
        self.link[self.net.hosts[n]] = True

    @rule(n=st.integers(0, 2))
    def kill(self, n: int) -> None:
        host = self.net.hosts[n]
        self.net.kill(host)
        self.link[host] = self.alive[host] = False
        assert netns.pids(host) == []

    @invariant()
    def the_world_reaches_the_hosts_up(self) -> None:
        for host in self.net.hosts:
            if self.link[host] and self.alive[host]:  # (a link just healed: the world's
                wait_until(lambda h=host: answers(self.net, h), 5,  # neighbour entry of
                           f"the world to reach {host}")  # it failed while cut: ARP again)
            else:
                assert not answers(self.net, host), host

    def teardown(self) -> None:
        self.net.close()
        assert not {self.net.world, *self.net.hosts} & set(netns.namespaces())


Hosts.TestCase.settings = settings(max_examples=4, stateful_step_count=5, deadline=None)
test_hosts_machine = Hosts.TestCase
