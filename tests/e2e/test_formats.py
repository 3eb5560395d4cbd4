"""End to end (promise 9): real processes of this release refuse a store a newer release
wrote, each with one line naming both versions, and leave it as it was."""

from __future__ import annotations

from relay import formats
from relay.names import Names
from relay.stack.model import ingress_args
from relay.stack.processes import HOST, Process, free_port, pd_relay, wait_until

NEWER = formats.FORMAT + 1


def test_this_releases_processes_refuse_a_newer_store(make_stack) -> None:
    stack = make_stack(keys=1)
    client = stack.redis.client()
    client.set(Names().format, NEWER)
    worker = stack.start_worker(0)
    ingress = Process("ingress", pd_relay() + ingress_args(HOST, free_port()), stack.env,
                      stack.logs)
    stack.processes.append(ingress)
    for process in (worker, ingress):
        wait_until(lambda p=process: not p.alive(), 15, f"{process.name} to refuse")
        assert process.popen.returncode == 2
        said = process.log.read_text()
        assert f"version {NEWER}, newer than this release reads (version " \
            f"{formats.FORMAT})" in said
    status = stack.cli("status")
    assert status.returncode == 2 and f"version {NEWER}" in status.stderr
    assert client.get(Names().format) == str(NEWER)
