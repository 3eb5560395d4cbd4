"""Review of issue 26, the ingest side (unit: ENQUEUE's Lua on fakeredis)."""

from __future__ import annotations

import logging

import pytest

from relay import keyring
from relay.keys import mask
from relay.logs import configure
from relay.names import HELD, Names
from relay.store import EventStore, now_ms
from tests.conftest import make_key
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


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_traceback_logged_shows_no_routing_key_in_full(capsys, fmt) -> None:
    # a delivery loop's defect (worker/fleet.py: log.exception) or the ingress's
    # unexpected error (relay/app.py) logs the exception's text, which only the message
    # was scrubbed of (failed before: the key was in the line's traceback)
    key = make_key()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("worker", "INFO", fmt, [key])
        try:
            raise ValueError(f"invalid literal for int() with base 10: {key!r}")
        except ValueError:
            logging.getLogger("relay.test").exception("key %s: the loop failed", key)
        logging.getLogger().handlers[0].flush()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "ValueError: invalid literal" in err and "Traceback" in err
    assert key not in err and mask(key) in err


def test_forget_key_leaves_the_total_at_the_keys_sum(settings, fake) -> None:
    # a v0.2.0 node (a rolling upgrade) queues bytes on a key without counting them in
    # the total; forget-key then took the key's bytes off the total (DECRBY), which went
    # below 0 and let the queues hold that much more than RELAY_QUEUES_MAX_MB until the
    # next sweep (failed before: -500)
    kid = kids(settings)
    fake.hset(NAMES.known_keys, mapping={k: "label" for k in [*kid, "0123456789abcdef"]})
    fake.hset(NAMES.stats("0123456789abcdef"), "bytes", 500)  # its queue, by v0.2.0
    fake.rpush(NAMES.queue("0123456789abcdef"), "x" * 500)
    fake.hset(NAMES.stats(kid[0]), "bytes", 200)
    fake.set(NAMES.queued_bytes, 0)
    keyring.forget(fake, NAMES, settings, "0123456789abcdef")
    assert int(fake.get(NAMES.queued_bytes)) == 200


def test_a_key_deleted_once_status_shows_it_empty_stops_no_process(settings, fake) -> None:
    # README: a drained key can be deleted once status shows QUEUED and OPEN 0. Status
    # counts no incident idle past its TTL as open (issue 26: ENQUEUE no longer trims
    # them), but the start-up check counted every remembered one: every process refused
    # to start naming the key's "open incident(s)", and none of them swept it (the sweep
    # covers configured keys only). Failed before: one leftover, 1 incident.
    gone = "0123456789abcdef"
    fake.hset(NAMES.known_keys, gone, "old-db R0…abcd")
    fake.zadd(NAMES.incidents(gone), {"idle": 1_000})  # silent since 1970
    fake.hset(NAMES.owners, "idle", "s:one")
    fake.hset(NAMES.where, "idle", gone)
    assert keyring.register(fake, NAMES, settings) == []
    assert not fake.hexists(NAMES.known_keys, gone)
    assert not fake.exists(NAMES.incidents(gone))  # forgotten with the key
    assert not fake.hexists(NAMES.owners, "idle") and not fake.hexists(NAMES.where, "idle")
    fake.hset(NAMES.known_keys, gone, "old-db R0…abcd")  # one still open: it is left
    fake.zadd(NAMES.incidents(gone), {"open": now_ms()})
    left = keyring.register(fake, NAMES, settings)
    assert [(one.kid, one.incidents) for one in left] == [(gone, 1)]
