"""Stored formats version 3 (issue 26, promise 9): what v0.1.0 and v0.2.0 stored is
upgraded by building the index of remembered incidents and the total of the queues'
bytes, in slices of bounded work, before any process of this release goes on; a
rollback and the next upgrade build them again; a start recounts the total."""

from __future__ import annotations

from typing import Any

import pytest

from relay import formats, indexing
from relay.names import HELD, Names
from relay.router import Route
from relay.store import EventStore, Record, now_ms
from tests.conftest import trigger

NAMES = Names()
KIDS = ("0aa", "1bb", "2cc")


def v2_store(fake: Any) -> None:
    """As v0.2.0 left it: incidents on each key's set (one on two: its later event on
    2cc), held ones, owners, the keys' bytes, no index, no total."""
    fake.set(NAMES.format, 2)
    fake.hset(NAMES.known_keys, mapping={kid: "label" for kid in KIDS})
    for n, kid in enumerate(KIDS):
        fake.zadd(NAMES.incidents(kid), {f"{kid}-{i}": 1_000 + i for i in range(5)})
        fake.hset(NAMES.stats(kid), "bytes", 100 * (n + 1))
    fake.zadd(NAMES.incidents("0aa"), {"both": 5})
    fake.zadd(NAMES.incidents("2cc"), {"both": 9})
    fake.zadd(NAMES.held, {"h1": 1, "h2": 2})
    fake.hset(NAMES.owners, mapping={"both": "s:one", "0aa-1": "s:two"})


def test_a_v2_store_is_indexed_and_counted_then_marked_version_3(fake) -> None:
    v2_store(fake)
    assert formats.ensure(fake, NAMES) == formats.Found(2, "upgraded")
    assert fake.get(NAMES.format) == "3" and not fake.exists(NAMES.upgrading)
    index = fake.hgetall(NAMES.where)
    assert index == {**{f"{kid}-{i}": kid for kid in KIDS for i in range(5)},
                     "both": "2cc", "h1": HELD, "h2": HELD}
    assert fake.get(NAMES.queued_bytes) == "600"
    assert fake.hget(NAMES.owners, "both") == "s:one"  # version 2's owners are kept
    assert formats.ensure(fake, NAMES) == formats.Found(3, "current")


def test_a_v1_store_forgets_its_owners_and_is_indexed(fake) -> None:
    v2_store(fake)
    fake.delete(NAMES.format)  # v0.1.0 stored no version
    assert formats.ensure(fake, NAMES) == formats.Found(1, "upgraded")
    assert not fake.exists(NAMES.owners) and fake.hget(NAMES.where, "both") == "2cc"
    assert fake.get(NAMES.format) == "3"


def test_the_build_goes_in_slices_and_no_process_goes_on_before_it_is_whole(
        fake, monkeypatch) -> None:
    v2_store(fake)
    monkeypatch.setattr(indexing, "PER_SLICE", 4)
    script = fake.register_script(indexing.BUILD)
    keys = [NAMES.format, NAMES.upgrading, NAMES.where, NAMES.known_keys,
            NAMES.queued_bytes, NAMES.held]
    done, indexed = script(keys=keys, args=[3, 4, NAMES.prefix])  # one process's slice
    assert (done, indexed) == (0, 2 + 2)  # the held set, then two of 0aa's
    assert formats.stored(fake, NAMES) == 2  # not yet readable as version 3
    calls = []
    real = fake.register_script

    def counted(text: str) -> Any:
        registered = real(text)
        if text != indexing.BUILD:
            return registered

        def call(**kwargs: Any) -> Any:
            calls.append(kwargs["args"][1])
            return registered(**kwargs)
        return call

    monkeypatch.setattr(fake, "register_script", counted)
    assert formats.ensure(fake, NAMES) == formats.Found(2, "upgraded")  # another process
    assert len(calls) >= 4 and set(calls) == {4}  # each slice bounded
    assert len(fake.hgetall(NAMES.where)) == 18 and fake.get(NAMES.format) == "3"


def test_a_rollback_and_the_next_upgrade_build_the_index_again(fake) -> None:
    v2_store(fake)
    formats.ensure(fake, NAMES)
    assert formats.rollback(fake, NAMES, 2) == 3
    # v0.2.0's processes: one incident moved (a named key), one resolved: index stale
    fake.zrem(NAMES.incidents("0aa"), "0aa-0")
    fake.zadd(NAMES.incidents("1bb"), {"0aa-0": 2_000})
    fake.zrem(NAMES.incidents("0aa"), "0aa-1")
    fake.hset(NAMES.stats("0aa"), "bytes", 0)
    assert formats.ensure(fake, NAMES) == formats.Found(2, "upgraded")
    assert fake.hget(NAMES.where, "0aa-0") == "1bb"
    assert not fake.hexists(NAMES.where, "0aa-1")
    assert fake.get(NAMES.queued_bytes) == "500"


def test_a_start_recounts_a_total_a_previous_release_left_wrong(fake) -> None:
    v2_store(fake)
    formats.ensure(fake, NAMES)
    fake.hincrby(NAMES.stats("1bb"), "bytes", 55)  # a v0.2.0 ingress still running
    assert formats.ensure(fake, NAMES) == formats.Found(3, "current")
    assert fake.get(NAMES.queued_bytes) == "655"


@pytest.mark.parametrize("found", [0, 3])
def test_a_fresh_or_current_store_builds_nothing(fake, found) -> None:
    if found:
        fake.set(NAMES.format, found)
    formats.ensure(fake, NAMES)
    assert not fake.exists(NAMES.upgrading) and not fake.exists(NAMES.where)


def test_after_the_upgrade_follow_ups_find_their_incidents(settings, fake) -> None:
    from relay.keys import key_id

    kid = key_id(settings.routing_keys[2])
    fake.set(NAMES.format, 2)
    fake.hset(NAMES.known_keys, kid, "label")
    fake.zadd(NAMES.incidents(kid), {"inc": now_ms()})
    formats.ensure(fake, NAMES)
    store = EventStore(fake, NAMES, settings)
    ack = Record("alert", {"event_action": "acknowledge", "dedup_key": "inc"}, 0).encode()
    assert store.enqueue([[(Route(1, "inc", "acknowledge", "default"), ack, "", "", "a")]]) \
        == [3]
    new = Record("alert", trigger(dedup_key="new"), 0).encode()
    assert store.enqueue([[(Route(1, "new", "trigger", "default"), new, "", "", "a")]]) == [1]
