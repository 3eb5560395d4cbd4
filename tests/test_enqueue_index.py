"""ENQUEUE in O(events), not O(keys) (issue 26): it names no key but through the events
it is given, finds an incident's key in the index (``Names.where``), forgets an idle
incident where it looks it up, counts every queue's bytes in one counter, and names the
keys it gave events to on ``Names.wake``. The EventStore on fakeredis (ENQUEUE's Lua)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import pytest

from relay import indexing
from relay.housekeeping import retention
from relay.keys import key_id, new_key
from relay.names import HELD, PER_KEY, Names
from relay.router import Route
from relay.settings import Settings
from relay.shed import Shed
from relay.store import EventStore, Full, Record, now_ms
from tests.conftest import trigger

NAMES = Names()
LONG_AGO = 1_000  # ms since the epoch: an incident silent since then is idle


def item(slot: int, dedup_key: str, action: str = "trigger", sender: str = "a",
         size: int = 0) -> tuple[Route, str, str, str, str]:
    body: dict[str, Any] = trigger(dedup_key=dedup_key) if action == "trigger" else \
        {"event_action": action, "dedup_key": dedup_key}
    if size:
        body["payload"]["custom_details"] = {"pad": "x" * size}
    return (Route(slot, dedup_key, action, "default"), Record("alert", body, 0).encode(),
            "", "", sender)


def kids(settings: Settings) -> list[str]:
    return [key_id(key) for key in settings.routing_keys]


def queued(fake: fakeredis.FakeRedis, kid: str) -> list[str]:
    return [Record.decode(raw).event["dedup_key"] for raw in fake.lrange(NAMES.queue(kid), 0, -1)]


def test_lua_names_a_keys_redis_keys_as_names_does(fake) -> None:
    for names in (Names(), Names("other-prefix")):
        for kind, named in (("queue", names.queue), ("stats", names.stats),
                            ("incidents", names.incidents)):
            built = fake.eval(PER_KEY + "return per_key(ARGV[1], ARGV[2], ARGV[3])", 0,
                              names.prefix, kind, "0123456789abcdef")
            assert built == named("0123456789abcdef")


def test_enqueue_is_given_no_redis_name_per_configured_key(settings, fake) -> None:
    many = replace(settings, routing_keys=tuple(new_key() for _ in range(50)))
    assert len(EventStore(fake, NAMES, many).keys) == len(EventStore(fake, NAMES, settings).keys)


def test_an_incident_is_found_on_the_key_it_was_named_to_through_the_index(settings,
                                                                       fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    assert store.enqueue([[item(-2, "inc")]]) == [2]  # the trigger named key 2
    assert fake.hget(NAMES.where, "inc") == kid[1]
    assert store.enqueue([[item(1, "inc", "acknowledge")]]) == [2]  # hashed to key 1
    assert queued(fake, kid[1]) == ["inc", "inc"] and queued(fake, kid[0]) == []
    assert store.enqueue([[item(-3, "inc", "acknowledge")]]) == [3]  # named key 3: moves
    assert fake.hget(NAMES.where, "inc") == kid[2]
    assert fake.zscore(NAMES.incidents(kid[1]), "inc") is None
    assert store.enqueue([[item(1, "inc", "resolve")]]) == [3]
    assert not fake.hexists(NAMES.where, "inc") and not fake.hexists(NAMES.owners, "inc")
    assert fake.zscore(NAMES.incidents(kid[2]), "inc") is None


def test_a_held_incident_is_indexed_as_held_and_its_follow_ups_held(settings, fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    assert store.enqueue([[item(0, "h")]]) == [0]
    assert fake.hget(NAMES.where, "h") == HELD
    assert store.enqueue([[item(1, "h", "acknowledge")]]) == [0]
    assert store.enqueue([[item(2, "h")]]) == [2]  # a trigger sent: held no more
    assert fake.hget(NAMES.where, "h") == kid[1] and fake.zcard(NAMES.held) == 0


def test_an_idle_incident_reads_as_unknown_and_is_forgotten_where_it_is_looked_up(
        settings, fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    assert store.enqueue([[item(-2, "idle", sender="s:one")], [item(-3, "other")]]) == [2, 3]
    fake.zadd(NAMES.incidents(kid[1]), {"idle": LONG_AGO})
    fake.zadd(NAMES.incidents(kid[2]), {"other": LONG_AGO})
    # another sender's follow-up: the idle incident is no one's now, and not on key 2
    assert store.enqueue([[item(1, "idle", "acknowledge", sender="s:two")]]) == [1]
    assert fake.zscore(NAMES.incidents(kid[1]), "idle") is None
    assert not fake.hexists(NAMES.owners, "idle") and not fake.hexists(NAMES.where, "idle")
    # an idle incident on a key the call gave nothing to is left for the sweep
    assert fake.zscore(NAMES.incidents(kid[2]), "other") == LONG_AGO
    swept = retention.sweep(fake, NAMES, settings, now_ms())
    assert swept["incidents"] == 1
    assert not fake.hexists(NAMES.where, "other") and not fake.hexists(NAMES.owners, "other")


def test_an_incident_a_previous_release_remembered_without_the_index_is_found(
        settings, fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    fake.hset(NAMES.known_keys, mapping={k: "label" for k in kid})
    fake.zadd(NAMES.incidents(kid[2]), {"old": now_ms()})  # as v0.2.0's ENQUEUE left it
    fake.hset(NAMES.owners, "old", "s:one")
    answers = store.enqueue([[item(1, "old", "acknowledge", sender="s:two")]])
    assert len(answers) == 1 and answers[0].position == 1  # type: ignore[union-attr]
    assert store.enqueue([[item(1, "old", "acknowledge", sender="s:one")]]) == [3]
    assert fake.hget(NAMES.where, "old") == kid[2]
    fake.hset(NAMES.owners, "stale", "s:one")  # remembered nowhere: forgotten
    assert store.enqueue([[item(1, "stale", "acknowledge", sender="s:two")]]) == [1]
    assert not fake.hexists(NAMES.owners, "stale")


def test_a_stale_index_entry_reads_as_unknown(settings, fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    fake.hset(NAMES.where, "gone", kid[2])  # a previous release forgot the incident
    assert store.enqueue([[item(1, "gone", "acknowledge")]]) == [1]
    assert not fake.hexists(NAMES.where, "gone")


def test_incidents_forgotten_past_the_cap_or_shed_leave_the_index(settings, fake) -> None:
    store = EventStore(fake, NAMES, replace(settings, incidents_max=2))
    for n in range(4):
        store.enqueue([[item(-1, f"c{n}")], [item(0, f"h{n}")]])
    assert set(fake.hkeys(NAMES.where)) == {"c2", "c3", "h2", "h3"}
    assert Shed(fake, NAMES).make_room()
    assert set(fake.hkeys(NAMES.where)) == {"c2", "c3"}


def test_the_total_is_one_counter_kept_with_the_keys_bytes(settings, fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    store.enqueue([[item(1, "a", size=100)], [item(2, "b", size=200)]])
    keys_bytes = sum(int(fake.hget(NAMES.stats(k), "bytes") or 0) for k in kid)
    assert keys_bytes > 300 and int(fake.get(NAMES.queued_bytes)) == keys_bytes
    # the total cap reads the counter, not the keys' bytes
    fake.set(NAMES.queued_bytes, 10**12)
    assert store.enqueue([[item(3, "c")]]) == [Full(3, total=True)]


def test_enqueue_names_each_key_it_gave_events_once_on_the_wake_channel(settings,
                                                                       fake) -> None:
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    listener = fake.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(NAMES.wake)
    store.enqueue([[item(1, "a"), item(1, "b")], [item(-3, "c"), item(0, "held")]])
    heard = []
    for _ in range(10):  # (the first answer may be the subscription's, ignored: None)
        message = listener.get_message(timeout=0.05)
        if message is not None:
            heard.append(message["data"])
    assert sorted(heard) == sorted([kid[0], kid[2]])
    listener.close()


@pytest.mark.parametrize("size", [1, 3])
def test_a_refused_request_changes_no_counter(settings, fake, size) -> None:
    store, kid = EventStore(fake, NAMES, replace(settings, queue_max_events=2)), kids(settings)
    assert store.enqueue([[item(1, f"x{n}") for n in range(size)]]) == (
        [1] if size == 1 else [Full(1, total=False)] * size)
    stored = int(fake.hget(NAMES.stats(kid[0]), "bytes") or 0)
    assert int(fake.get(NAMES.queued_bytes) or 0) == stored


def test_the_retention_sweep_sets_a_drifted_total_right(settings, fake) -> None:
    """What corrects drift: a previous release's processes (a rolling upgrade) change
    the keys' bytes without the total; the sweep sets it to their sum, at once."""
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    fake.hset(NAMES.known_keys, mapping={k: "label" for k in kid})
    store.enqueue([[item(1, "a", size=100)]])
    fake.hincrby(NAMES.stats(kid[1]), "bytes", 1234)  # as v0.2.0's ENQUEUE counts
    retention.sweep(fake, NAMES, settings, now_ms())
    assert int(fake.get(NAMES.queued_bytes)) == sum(
        int(fake.hget(NAMES.stats(k), "bytes") or 0) for k in kid)


def test_a_full_redis_at_the_first_store_leaves_the_slots_for_the_next(settings, fake,
                                                                      monkeypatch) -> None:
    import redis

    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    real, refused, full = fake.hset, [], [True]

    def while_full(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == store.slots_name and full:
            refused.append(name)
            raise redis.exceptions.OutOfMemoryError("OOM command not allowed")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(fake, "hset", while_full)
    assert store.enqueue([[item(-2, "a")]]) == [2]  # stored all the same
    assert refused and not fake.exists(store.slots_name)
    full.clear()
    assert store.enqueue([[item(1, "a", "acknowledge")]]) == [2]
    assert fake.hget(store.slots_name, kid[1]) == "2"


def test_two_resolves_in_one_call_forget_the_incident_where_it_was_remembered(
        settings, fake) -> None:
    """The second resolve of an incident the call already resolved goes by its hash (to
    another key here): the incident must still leave the key it was remembered on (it
    stayed there, unowned, until its TTL; found by tests/test_index_machine.py)."""
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    assert store.enqueue([[item(1, "r")]]) == [1]
    assert store.enqueue([[item(1, "r", "resolve"), item(2, "r", "resolve")]]) == [1, 2]
    assert fake.zscore(NAMES.incidents(kid[0]), "r") is None
    assert not fake.hexists(NAMES.where, "r")


def test_status_counts_no_incident_idle_past_its_ttl_as_open(settings, fake) -> None:
    """ENQUEUE no longer sweeps every key's set: an idle incident stays in its set until
    it is looked up or swept, and status must not count it as open meanwhile."""
    from relay.status import read_status

    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    store.enqueue([[item(-1, "open"), item(-1, "quiet")]])
    fake.zadd(NAMES.incidents(kid[0]), {"quiet": LONG_AGO})
    assert read_status(fake, NAMES, settings)[0]["open_incidents"] == 1


def test_the_sweep_drops_index_entries_of_incidents_a_previous_release_forgot(
        settings, fake, monkeypatch) -> None:
    """A v0.2.0 node still running after the upgrade forgets idle incidents from the sets
    and owners, not from the index: the retention sweep drops such entries, a slice a
    sweep, and keeps the live ones."""
    monkeypatch.setattr(indexing, "SWEPT_PER_CALL", 3, raising=False)
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    store.enqueue([[item(-1, f"live{n}"), item(-2, f"gone{n}")] for n in range(4)])
    for n in range(4):  # as v0.2.0's ENQUEUE forgets an idle one
        fake.zrem(NAMES.incidents(kid[1]), f"gone{n}")
        fake.hdel(NAMES.owners, f"gone{n}")
    for _ in range(8):
        retention.sweep(fake, NAMES, settings, now_ms())
    assert sorted(fake.hkeys(NAMES.where)) == [f"live{n}" for n in range(4)]
