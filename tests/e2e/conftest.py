from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.sentinels import SentinelGroup


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start a stack (redis-server only; the test starts the rest) and stop it after.

    At the end, no process log may hold a full routing key (promise 6).
    """
    stacks: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", **kwargs)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
    for stack in stacks:
        text = stack.logs_text()
        for key in stack.keys:
            assert key not in text, "a routing key was logged in full"
        assert "Traceback" not in text, text[-3000:]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A primary, two replicas and three Sentinels on loopback, the primary refusing
    writes without a replica (as the stack configures it); a test file may define its
    own (passwords)."""
    started = SentinelGroup(tmp_path / "group", tmp_path / "group-logs",
                            min_replicas_to_write=1)
    try:
        started.start()
        yield started
    finally:
        started.stop()
