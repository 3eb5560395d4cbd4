"""Keys removed from the keys file: what they left is found, refused, shown, or forgotten."""

from __future__ import annotations

from dataclasses import replace

from relay.app import create_app
from relay.deadletters import DeadLetters
from relay.keyring import register
from relay.keys import key_id, mask
from relay.names import Names
from relay.status import format_table, read_status
from relay.store import Record
from tests.conftest import trigger

NAMES = Names()


def test_a_removed_key_with_events_or_open_incidents_is_a_leftover(settings, fake) -> None:
    keys = settings.routing_keys
    assert register(fake, NAMES, settings) == []
    client = create_app(settings, client=fake).test_client()
    client.post("/v2/enqueue", json=[trigger(dedup_key=f"i{n}", routing_key=keys[2])
                                     for n in range(3)])
    fake.lmove(NAMES.queue(key_id(keys[2])), NAMES.inflight(key_id(keys[2])))
    client.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "i0",
                                     "routing_key": keys[2]})  # its owner: the key's holder
    fewer = replace(settings, routing_keys=keys[:1])  # keys[1] left nothing, keys[2] did
    [leftover] = register(fake, NAMES, fewer)
    assert (leftover.kid, leftover.label) == (key_id(keys[2]), f"key-3 {mask(keys[2])}")
    # the resolve followed its trigger to keys[2], and forgot its incident
    assert (leftover.queued, leftover.in_flight, leftover.incidents) == (3, 1, 2)
    problem = leftover.problem(settings.keys_file)
    assert "3 queued, 1 in flight and 2 open incident(s)" in problem
    assert f"pd-relay forget-key {key_id(keys[2])}" in problem and keys[2] not in problem
    assert fake.hexists(NAMES.known_keys, key_id(keys[2]))
    assert not fake.hexists(NAMES.known_keys, key_id(keys[1]))  # nothing left: forgotten
    rows = read_status(fake, NAMES, fewer)
    assert [(row["name"], row["routing_key"], row["state"]) for row in rows] == [
        ("key-1", mask(keys[0]), "active"), ("key-3", mask(keys[2]), "removed")]
    assert rows[1]["queued"] == 3 and rows[1]["open_incidents"] == 2
    assert f"key-3 {mask(keys[2])} (removed)" in format_table(rows)


def test_forget_key_moves_its_events_to_the_dead_letters_in_order(settings, fake) -> None:
    from relay.keyring import forget

    keys = settings.routing_keys
    register(fake, NAMES, settings)
    client = create_app(settings, client=fake).test_client()
    client.post("/v2/enqueue", json=[trigger(dedup_key=f"i{n}", routing_key=keys[1])
                                     for n in range(3)])
    fake.lmove(NAMES.queue(key_id(keys[1])), NAMES.inflight(key_id(keys[1])))
    fewer = replace(settings, routing_keys=(keys[0], keys[2]))
    assert forget(fake, NAMES, fewer, key_id(keys[1])) == 3
    letters = DeadLetters(fake, NAMES, fewer.routing_keys).list()
    assert [letter["event"].split()[-1] for letter in letters] == ["i0", "i1", "i2"]
    assert register(fake, NAMES, fewer) == []
    assert fake.zcard(NAMES.incidents(key_id(keys[1]))) == 0
    assert [Record.decode(r) for r in fake.lrange(NAMES.queue(key_id(keys[1])), 0, -1)] == []
