"""A data node's start (``relay.stack.datanode``): it asks the Sentinels it knows who the
primary is now and starts as that primary's replica, or as the primary when the answer
is itself; with no Sentinel answering, as its role says (``--primary``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from relay.stack import binaries
from relay.stack.datanode import (
    START_FILE,
    Address,
    Start,
    read_start,
    replicaof,
    start_for,
    write_start,
)
from relay.stack.hosts import role_programs
from relay.stack.options import StackOptions
from relay.stack.processes import HOST, Process, free_port, wait_until
from relay.stack.roles import Roles

REPLICA = Start("mymaster", ("10.0.0.2", 6379), (("10.0.0.2", 26379), ("10.0.0.1", 26379)),
                "10.0.0.1:6379", "sentinel-pass")


def answers(table: dict[Address, Address | None | Exception]):  # type: ignore[no-untyped-def]
    asked: list[tuple[Address, str, str]] = []

    def asking(sentinel: Address, service: str, password: str) -> Address | None:
        asked.append((sentinel, service, password))
        found = table.get(sentinel, redis.ConnectionError("refused"))
        if isinstance(found, Exception):
            raise found
        return found
    return asking, asked


def test_the_sentinels_answer_this_node_it_starts_as_the_primary() -> None:
    asking, asked = answers({("10.0.0.2", 26379): ("10.0.0.2", 6379)})
    assert replicaof(REPLICA, asking) == []
    assert asked == [(("10.0.0.2", 26379), "mymaster", "sentinel-pass")]


def test_the_sentinels_answer_another_node_it_starts_as_its_replica() -> None:
    asking, _ = answers({("10.0.0.2", 26379): ("10.0.0.3", 6380)})
    assert replicaof(REPLICA, asking) == ["--replicaof", "10.0.0.3", "6380"]
    primary = Start("mymaster", ("10.0.0.1", 6379), (("10.0.0.1", 26379),))
    asking, _ = answers({("10.0.0.1", 26379): ("10.0.0.3", 6379)})
    assert replicaof(primary, asking) == ["--replicaof", "10.0.0.3", "6379"]


def test_the_first_sentinel_that_knows_the_service_decides() -> None:
    asking, asked = answers({("10.0.0.2", 26379): None, ("10.0.0.1", 26379): ("10.0.0.3", 1)})
    assert replicaof(REPLICA, asking) == ["--replicaof", "10.0.0.3", "1"]
    asking, asked = answers({("10.0.0.2", 26379): redis.AuthenticationError("invalid"),
                             ("10.0.0.1", 26379): ("10.0.0.2", 6379)})
    assert replicaof(REPLICA, asking) == [] and len(asked) == 2


def test_no_sentinel_answers_it_starts_as_its_role_says_and_logs_it(
        caplog: pytest.LogCaptureFixture) -> None:
    asking, asked = answers({})
    with caplog.at_level(logging.WARNING, logger="relay.stack.datanode"):
        assert replicaof(REPLICA, asking) == ["--replicaof", "10.0.0.1", "6379"]
    assert len(asked) == 2 and "no Sentinel answered" in caplog.text
    assert "10.0.0.1:26379" in caplog.text and "sentinel-pass" not in caplog.text
    assert replicaof(replace(REPLICA, first_primary=""), asking) == []
    assert replicaof(replace(REPLICA, sentinels=()), asking) == ["--replicaof", "10.0.0.1",
                                                                 "6379"]


OUTCOMES = st.one_of(st.none(), st.just("error"), st.just("self"),
                     st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.3"]),
                               st.integers(1, 65535)))


@given(st.lists(OUTCOMES, max_size=5), st.booleans())
def test_the_first_answer_decides_and_only_none_falls_back(
        outcomes: list[object], replica: bool) -> None:
    """Whatever the Sentinels answer, in any order: the first that names a primary
    decides (itself: a primary; another: its replica), no later one is asked; none
    naming one, the role's place (``--primary``'s replica, or a primary)."""
    sentinels = tuple(("10.9.0.1", 26379 + n) for n in range(len(outcomes)))
    table: dict[Address, Address | None | Exception] = {}
    for sentinel, outcome in zip(sentinels, outcomes, strict=True):
        table[sentinel] = (redis.TimeoutError("slow") if outcome == "error"
                           else REPLICA.me if outcome == "self" else outcome)  # type: ignore[assignment]
    start = replace(REPLICA, sentinels=sentinels,
                    first_primary=REPLICA.first_primary if replica else "")
    asking, asked = answers(table)
    first = next((n for n, o in enumerate(outcomes) if o not in (None, "error")), None)
    found = replicaof(start, asking)
    if first is None:
        assert len(asked) == len(outcomes)
        assert found == (["--replicaof", "10.0.0.1", "6379"] if replica else [])
        return
    assert len(asked) == first + 1
    named = table[sentinels[first]]
    assert found == ([] if named == REPLICA.me
                     else ["--replicaof", named[0], str(named[1])])  # type: ignore[index]


def test_whom_it_asks_its_own_sentinel_then_the_urls_and_the_file_is_private(
        tmp_path: Path) -> None:
    roles = Roles.parse(["redis-replica", "sentinel"], announce="10.0.0.2",
                        primary="10.0.0.1:6379", monitor="10.0.0.1:6379", sentinel_port=26380)
    url = "redis+sentinel://:data@10.0.0.1:26379,10.0.0.2:26380,10.0.0.3:26379/pd/0"
    start = start_for(Roles.parse(["redis-replica", "sentinel"], announce="10.0.0.2",
                                  primary="10.0.0.1:6379", monitor="10.0.0.1:6379",
                                  sentinel_port=26380, service="pd"),
                      {"RELAY_REDIS_URL": url}, "s-pass")
    assert start.sentinels == (("10.0.0.2", 26380), ("10.0.0.1", 26379), ("10.0.0.3", 26379))
    assert (start.service, start.me, start.first_primary) == ("pd", ("10.0.0.2", 6379),
                                                              "10.0.0.1:6379")
    assert start_for(Roles.parse(["redis-primary"], announce="10.0.0.1"), {}, "").sentinels == ()
    path = tmp_path / START_FILE
    write_start(path, start)
    assert read_start(path) == start and path.stat().st_mode & 0o077 == 0
    options = replace(StackOptions.from_env({}, tmp_path, euid=1000), roles=roles)
    env = {"PD_RELAY_REDIS_PASSWORD": "data", "RELAY_SENTINEL_PASSWORD": "s-pass",
           "RELAY_REDIS_URL": url}
    redis_program = role_programs(options, env, binary="redis-server")[0]
    assert "s-pass" not in " ".join(redis_program.argv)
    before = redis_program.fingerprint
    changed = role_programs(options, dict(env, RELAY_SENTINEL_PASSWORD="s-new"),
                            binary="redis-server")[0]
    assert changed.fingerprint != before  # a new password restarts it: it reads it at start


def test_a_real_sentinel_answers_with_its_password_and_refuses_a_wrong_one(
        tmp_path: Path) -> None:
    """This machine's redis-server as a Sentinel with a password: the right one gets its
    answer, a wrong one (AuthenticationError) or a closed port falls back to --primary."""
    port, primary_port, closed = free_port(), free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"bind {HOST}\nport {port}\ndir {tmp_path}\nrequirepass right-pass\n"
                    f"sentinel monitor mymaster {HOST} {primary_port} 1\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    sentinel = Process("sentinel", [binaries.redis_server(), str(conf), "--sentinel"],
                       dict(os.environ), logs)
    try:
        client = redis.Redis(host=HOST, port=port, password="right-pass", socket_timeout=2)
        wait_until(lambda: _pings(client), 20, "the Sentinel", every=0.1)
        start = Start("mymaster", (HOST, free_port()), ((HOST, closed), (HOST, port)),
                      "192.0.2.1:6379", "right-pass")
        assert replicaof(start) == ["--replicaof", HOST, str(primary_port)]
        assert replicaof(replace(start, me=(HOST, primary_port))) == []
        wrong = replace(start, sentinel_password="wrong-pass")
        assert replicaof(wrong) == ["--replicaof", "192.0.2.1", "6379"]
        assert replicaof(replace(start, service="other")) == ["--replicaof", "192.0.2.1",
                                                               "6379"]
    finally:
        sentinel.kill()


def test_the_entry_becomes_the_server_with_its_place(tmp_path: Path) -> None:
    """``python -m relay.stack.datanode FILE SERVER ARGS`` execs SERVER with its place
    added (here ``echo``; no Sentinel answers: the role's --primary), and says why."""
    path = tmp_path / START_FILE
    write_start(path, Start("mymaster", (HOST, 6379), ((HOST, free_port()),),
                            f"{HOST}:7000", "secret-pass"))
    done = subprocess.run([sys.executable, "-m", "relay.stack.datanode", str(path), "/bin/echo",
                           "conf", "--port", "6379"], capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout.split() == ["conf", "--port", "6379", "--replicaof", HOST, "7000"]
    assert "no Sentinel answered" in done.stderr and "secret-pass" not in done.stderr


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
