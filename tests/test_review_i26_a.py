"""Review of issue 26, the ingest side (unit: ENQUEUE's Lua on fakeredis)."""

from __future__ import annotations

from relay.names import HELD, Names
from relay.store import EventStore, now_ms
from tests.test_enqueue_index import item, kids, queued

NAMES = Names()


def test_an_incident_a_previous_release_moved_is_found_where_it_went(settings, fake) -> None:
    # during a rolling upgrade a v0.2.0 node moves an incident (an event naming another
    # key; a held trigger sent) without the index: the index names the set it left. The
    # lookup dropped the entry and read the incident as unknown: its follow-ups went by
    # the hash (order, promise 3), and another sender took it over (promise 7). Failed
    # before: [1] and then [1], where the incident is remembered on key 3.
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    fake.hset(NAMES.known_keys, mapping={k: "label" for k in kid})
    fake.zadd(NAMES.incidents(kid[2]), {"moved": now_ms()})  # where v0.2.0 moved it
    fake.hset(NAMES.owners, "moved", "s:one")
    fake.hset(NAMES.where, "moved", kid[0])  # what this release's node indexed before
    answers = store.enqueue([[item(1, "moved", "trigger", sender="s:two")]])
    assert len(answers) == 1 and answers[0].position == 1  # type: ignore[union-attr]
    assert store.enqueue([[item(1, "moved", "acknowledge", sender="s:one")]]) == [3]
    assert queued(fake, kid[2]) == ["moved"] and queued(fake, kid[0]) == []
    assert fake.hget(NAMES.where, "moved") == kid[2]
    assert fake.hget(NAMES.owners, "moved") == "s:one"


def test_a_held_incident_a_previous_release_sent_is_found_on_its_key(settings, fake) -> None:
    # the same for a held trigger a v0.2.0 node sent on (failed before: held back, 0)
    store, kid = EventStore(fake, NAMES, settings), kids(settings)
    fake.hset(NAMES.known_keys, mapping={k: "label" for k in kid})
    fake.zadd(NAMES.incidents(kid[1]), {"sent": now_ms()})
    fake.hset(NAMES.owners, "sent", "s:one")
    fake.hset(NAMES.where, "sent", HELD)
    assert store.enqueue([[item(0, "sent", "resolve", sender="s:one")]]) == [2]
    assert not fake.hexists(NAMES.where, "sent") and not fake.hexists(NAMES.owners, "sent")
    assert fake.zscore(NAMES.incidents(kid[1]), "sent") is None
