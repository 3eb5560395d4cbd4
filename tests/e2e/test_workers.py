"""End to end: worker processes serving many keys (``pd-relay worker --keys all``): a
kill -9 of one loses nothing, its keys are taken over by the other in order; a key added
to the keys file is served after SIGHUP, without a restart."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from typing import Any

from relay.keys import key_id, new_key
from relay.names import Names
from relay.stack.processes import wait_until
from tests.conftest import trigger

NAMES = Names()
TTL_S = 5.0  # the loopback stack's lease


def event(key: str, n: int, i: int) -> dict[str, Any]:
    return trigger(f"key {n} event {i}", dedup_key=f"k{n}-e{i}", routing_key=key,
                   payload={"summary": f"key {n} event {i}", "source": "db1",
                            "severity": "critical", "custom_details": {"seq": i}})


def holders(stack: Any) -> dict[str, str]:
    client = stack.redis.client()
    return {key: str(client.get(NAMES.lease(key_id(key))) or "") for key in stack.keys}


def pid_of(holder: str) -> int:
    return int(holder.split(":")[1]) if holder.count(":") >= 2 else 0


def per_key_seqs(stack: Any) -> dict[str, list[int]]:
    """Each key's delivered events' numbers, a resend repeating in place counted once."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for sent in stack.delivered():
        mine = seqs[sent["routing_key"]]
        seq = sent["custom_details"]["seq"]
        if not mine or mine[-1] != seq:
            mine.append(seq)
    return seqs


def test_kill_9_of_a_process_serving_many_keys_hands_each_to_the_standby_in_order(
        make_stack) -> None:
    per_key = 20
    stack = make_stack(keys=6)
    stack.start_simulator()
    stack.sim_config(slow_rate=1.0, slow_s=0.2)  # a backlog: each key ~5 sends a second
    stack.start_ingress()
    first = stack.start_workers(1, 2)
    second = stack.start_workers(2, 2)
    pids = {first.popen.pid, second.popen.pid}
    wait_until(lambda: all(pid_of(h) in pids for h in holders(stack).values()), 15,
               "every lease held by the processes")
    for i in range(per_key):
        for n, key in enumerate(stack.keys):
            assert stack.post(event(key, n, i)).status_code == 202
    wait_until(lambda: len(stack.delivered()) >= len(stack.keys) * 2, 30,
               "a few events of each key delivered")
    # the process delivering key 0 (and its share of the others: with random keys, one
    # share may hold them all)
    victim, standby = (first, second) if pid_of(holders(stack)[stack.keys[0]]) == \
        first.popen.pid else (second, first)
    theirs = [k for k, h in holders(stack).items() if pid_of(h) == victim.popen.pid]
    victim.popen.send_signal(signal.SIGKILL)
    victim.popen.wait(5)
    left = per_key_seqs(stack)
    assert all(len(left[k]) < per_key for k in theirs), "killed after its keys were done"
    killed = time.monotonic()
    wait_until(lambda: all(pid_of(h) == standby.popen.pid for h in holders(stack).values()),
               TTL_S + 4, "the standby to take every key over within the lease (+ a tick)")
    taken_after = time.monotonic() - killed
    wait_until(lambda: all(len(s) == per_key for s in per_key_seqs(stack).values())
               and len(per_key_seqs(stack)) == len(stack.keys), 60, "every event delivered")
    seqs = per_key_seqs(stack)
    assert seqs == {key: list(range(per_key)) for key in stack.keys}, "lost or reordered"
    assert taken_after <= TTL_S + 4


def test_a_key_added_to_the_keys_file_is_served_after_sighup(make_stack) -> None:
    stack = make_stack(keys=2)
    stack.start_simulator()
    workers = stack.start_workers()
    wait_until(lambda: all(holders(stack).values()), 15, "the leases taken")
    added = new_key()
    stack.write_keys([*stack.keys, added])
    pid_before = workers.popen.pid
    workers.popen.send_signal(signal.SIGHUP)
    stack.start_ingress()  # started after the change: it takes the new key
    assert stack.post(event(added, 2, 0)).status_code == 202
    wait_until(lambda: per_key_seqs(stack).get(added) == [0], 15, "the new key's event")
    assert workers.alive() and workers.popen.pid == pid_before
    removed = stack.keys[0]
    stack.write_keys(stack.keys[1:])
    workers.popen.send_signal(signal.SIGHUP)
    client = stack.redis.client()
    wait_until(lambda: client.get(NAMES.lease(key_id(removed))) is None, 15,
               "the removed key's lease given up")
    assert workers.alive() and workers.popen.pid == pid_before
