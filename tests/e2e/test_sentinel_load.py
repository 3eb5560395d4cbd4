"""End to end: the relay against Redis under Sentinel (``redis+sentinel://``): ingress
and workers under a steady load across a SENTINEL FAILOVER and then a kill -9 of the
primary. Clients retry on 503 and connection errors (as Alertmanager does); every event
answered 202 is delivered, each key's in order (a re-send is allowed, a reorder is
not), no key is sent more than its limit in any window (the simulator answers 429 past
it), FINISH's counts are not rolled back below what was delivered, and the CLI reads the
new primary."""

from __future__ import annotations

import json
import signal
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from relay.stack.processes import wait_until
from relay.stack.sentinels import SentinelGroup
from tests.conftest import trigger

PASSWORD = "data-n0de-pw"
LIMIT, WINDOW_S = 25, 5  # sends per key per window: the limiter binds under this load


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    # as the stack configures it: a primary left without a replica refuses writes (a
    # SENTINEL FAILOVER leaves the old one a primary until the Sentinels see it again, up
    # to 10 s: its clients' writes there would be thrown away)
    made = SentinelGroup(tmp_path / "group", tmp_path / "group-logs", password=PASSWORD,
                         sentinel_password="s3ntinel-pw", min_replicas_to_write=1)
    try:
        made.start()
        yield made
    finally:
        made.stop()


class Sender(threading.Thread):
    """Posts each key's events in turn, numbered, each until it is answered 202."""

    def __init__(self, stack: Any, keys: list[str], pace_s: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.keys, self.pace_s = stack, keys, pace_s
        self.accepted: dict[str, list[int]] = defaultdict(list)
        self.refused = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.stopping.is_set():
            for n, key in enumerate(self.keys):
                body = trigger(f"key {n} event {seq}", dedup_key=f"k{n}-e{seq}",
                               routing_key=key, payload={
                                   "summary": f"key {n} event {seq}", "source": "db1",
                                   "severity": "critical", "custom_details": {"seq": seq}})
                while not self.stopping.is_set():
                    try:
                        if self.stack.post(body).status_code == 202:
                            self.accepted[key].append(seq)
                            break
                    except requests.RequestException:
                        pass
                    self.refused += 1
                    self.stopping.wait(0.1)
            seq += 1
            self.stopping.wait(self.pace_s)

    def count(self) -> int:
        return sum(len(seqs) for seqs in self.accepted.values())


def delivered(stack: Any) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for sent in stack.delivered():
        seqs[sent["routing_key"]].append(sent["custom_details"]["seq"])
    return seqs


def missing(stack: Any, accepted: dict[str, list[int]]) -> dict[str, list[int]]:
    got = delivered(stack)
    return {key: sorted(set(seqs) - set(got.get(key, []))) for key, seqs in accepted.items()
            if set(seqs) - set(got.get(key, []))}


def firsts(seqs: list[int]) -> list[int]:
    """Each event's first delivery, in delivery order (a re-send is not counted)."""
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def test_load_across_a_failover_and_a_kill_9_of_the_primary_loses_nothing_in_order(
        make_stack, group: SentinelGroup) -> None:
    stack = make_stack(keys=2, redis_url=group.url,
                       RELAY_SENTINEL_PASSWORD=group.sentinel_password,
                       RELAY_RATE_PER_MIN=str(LIMIT), RELAY_RATE_WINDOW_S=str(WINDOW_S))
    # PagerDuty's limit is the relay's: a send over it (a reservation a failover threw
    # away) is answered 429 and counted
    stack.start_simulator(limit=LIMIT, window_s=WINDOW_S)
    stack.start_ingress()
    stack.start_workers()
    sender = Sender(stack, stack.keys, pace_s=WINDOW_S / LIMIT)  # about the limit
    sender.start()
    try:
        wait_until(lambda: sender.count() >= 20, 30, "some events accepted")
        wait_until(lambda: len(stack.delivered()) >= 10, 30, "some delivered")
        first = group.primary()
        group.failover(pause_ms=5000)  # planned: the old primary's writes paused first
        at_failover = sender.count()
        wait_until(lambda: sender.count() >= at_failover + 20, 30,
                   "events accepted after SENTINEL FAILOVER")
        second = group.primary()
        group.kill_primary()
        group.wait_failover(second, 30)
        at_kill = sender.count()
        wait_until(lambda: sender.count() >= at_kill + 20, 30,
                   "events accepted after the kill -9 of the primary")
    finally:
        sender.stopping.set()
        sender.join(15)
    accepted = dict(sender.accepted)
    try:
        wait_until(lambda: not missing(stack, accepted), 60, "every accepted event delivered")
    except AssertionError:
        raise AssertionError(f"not delivered: {missing(stack, accepted)}\n"
                             f"{stack.logs_text()[-4000:]}") from None
    got = delivered(stack)
    for key, seqs in accepted.items():
        assert firsts(got[key]) == sorted(firsts(got[key])), "reordered"
        assert set(seqs) <= set(got[key]), "lost"
    assert first != second != group.primary()
    rows = stack.status()  # the CLI reads the new primary too
    # FINISH's counts were not rolled back with writes the replicas never had
    assert sum(row["delivered"] for row in rows) >= sum(map(len, accepted.values()))
    assert stack.sim_get("stats")["counts"].get("429", 0) == 0, "a key over its limit"
    text = stack.logs_text()
    assert PASSWORD not in text and group.sentinel_password not in text


def test_no_replica_in_sync_is_a_503_and_check_fails_until_they_are_back(
        make_stack, tmp_path: Path) -> None:
    """RELAY_MIN_REPLICAS=1 (a Sentinel URL's default): with both replicas stopped the
    ingress answers 503 with Retry-After (WAIT confirmed none; the primary takes writes:
    no min-replicas-to-write here) and ``check`` exits 2 saying why; once they are back,
    202 again, and ``status --json`` names the primary, the replicas and the Sentinels."""
    group = SentinelGroup(tmp_path / "solo", tmp_path / "solo-logs")
    try:
        group.start()
        stack = make_stack(keys=1, redis_url=group.url, RELAY_REPLICA_TIMEOUT_MS="200")
        stack.start_ingress()
        assert stack.post(trigger("with replicas")).status_code == 202
        primary = group.primary()
        replicas = group.replicas()
        for port in replicas:
            group.stop_node(port)
        wait_until(lambda: group.in_sync(primary[1]) == 0, 15, "the replicas gone")
        reply = stack.post(trigger("no replica"))
        assert reply.status_code == 503 and int(reply.headers["Retry-After"]) > 0
        assert reply.json()["status"] == "not replicated"
        checked = stack.cli("check")
        assert checked.returncode == 2, checked.stdout + checked.stderr
        assert "only 0 replica(s) in sync, RELAY_MIN_REPLICAS=1" in checked.stderr
        for port in replicas:
            group.start_node(port, replica_of=primary[1])
        wait_until(lambda: group.in_sync(primary[1]) == 2, 30, "the replicas back")
        assert stack.post(trigger("replicas back")).status_code == 202
        assert stack.cli("check").returncode == 0
        shown = json.loads(stack.cli("status", "--json").stdout)["replication"]
        assert shown["primary"] == f"{primary[0]}:{primary[1]}"
        assert shown["replicas_in_sync"] == shown["replicas_known"] == 2
        assert shown["sentinels"]["answering"] == 3 and shown["sentinels"]["quorum"] == 2
        assert {r["address"] for r in shown["replicas"]} == {f"127.0.0.1:{p}" for p in replicas}
    finally:
        group.stop()


def test_sends_the_replicas_never_confirmed_do_not_happen_so_a_failover_keeps_the_limit(
        make_stack, tmp_path: Path) -> None:
    """The worker's WAIT, end to end: events queued, then both replicas frozen (SIGSTOP:
    they confirm nothing) and a worker started: it sends nothing, its attempts end
    unconfirmed (without the WAIT it sent a window's worth: checked by hand, 6 sent).
    Then the primary is killed (-9) and the replicas thawed: every event is delivered
    from the new primary, in order, never past PagerDuty's limit. (A frozen replica's
    kernel still takes the stream, so here nothing is rolled back; the unit tests and
    the state machine cover what the WAIT orders.)"""
    limit, window_s = 6, 15
    group = SentinelGroup(tmp_path / "frozen", tmp_path / "frozen-logs")
    try:
        group.start()
        stack = make_stack(keys=1, redis_url=group.url, RELAY_RATE_PER_MIN=str(limit),
                           RELAY_RATE_WINDOW_S=str(window_s))
        stack.start_simulator(limit=limit, window_s=window_s)
        stack.start_ingress()
        for n in range(limit + 2):
            body = trigger(f"event {n}", dedup_key=f"e{n}",
                           payload={"summary": f"event {n}", "source": "db1",
                                    "severity": "critical", "custom_details": {"seq": n}})
            assert stack.post(body).status_code == 202
        primary = group.primary()
        replicas = group.replicas()
        for port in replicas:
            group.nodes[port].popen.send_signal(signal.SIGSTOP)
        stack.start_workers()
        # the worker asks for confirmation and gets none (its WAITs time out): it
        # retries, and sends nothing
        wait_until(lambda: stack.status()[0]["retried"] >= 2 or len(stack.delivered()) >=
                   limit, 30, "unconfirmed attempts (or, without the WAIT, sends)")
        early = stack.delivered()
        group.stop_node(primary[1])
        for port in replicas:
            group.nodes[port].popen.send_signal(signal.SIGCONT)
        group.wait_failover(primary, 30)
        wait_until(lambda: len({e["dedup_key"] for e in stack.delivered()}) == limit + 2,
                   60, "every event delivered on the new primary")
        over = stack.sim_get("stats")["counts"].get("429", 0)
        seqs = [e["custom_details"]["seq"] for e in stack.delivered()]
        assert (len(early), over) == (0, 0), "sent unconfirmed; over the limit after"
        assert firsts(seqs) == sorted(firsts(seqs))
    finally:
        group.stop()
