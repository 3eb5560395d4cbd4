"""Each event's story without processes (the Flask app on fakeredis: ENQUEUE's Lua)."""

from __future__ import annotations

from relay.history import History
from relay.history.search import Query, search
from relay.keys import key_id
from relay.names import Names
from relay.store import Record

NAMES = Names("pdr")


def test_one_entry_holds_a_calls_accepted_steps_and_trace_finds_each(client, fake,
                                                                     settings) -> None:
    events = [{"event_action": "trigger", "dedup_key": f"d{n}", "payload": {
        "summary": "s", "source": "db1", "severity": "critical"}} for n in range(3)]
    assert client.post("/v2/enqueue", json=events).status_code == 202
    assert fake.xlen(NAMES.history) == 1  # one XADD for the whole call
    history = History(fake, NAMES, settings)
    [story] = search(fake, NAMES, Query(dedup_key="d1"))
    key = settings.routing_keys[story.steps[0]["slot"] - 1]  # the key it was queued on
    [stored] = [r for r in map(Record.decode, fake.lrange(NAMES.queue(key_id(key)), 0, -1))
                if r.event["dedup_key"] == "d1"]
    assert story.id == stored.id and len(story.id) == 16
    assert story.steps[0]["step"] == "accepted" and story.steps[0]["a"] == "trigger"
    assert story.steps[0]["s"] == "anonymous" and story.end == ""
    history.note("delivered", 0, i=story.id, d="d1", r="ok")
    assert search(fake, NAMES, Query(dedup_key="d1"))[0].end == "delivered"
    assert search(fake, NAMES, Query(dedup_key="nope")) == []


def test_no_history_when_it_is_off(settings, fake) -> None:
    from dataclasses import replace

    from relay.app import create_app

    off = create_app(replace(settings, history_max_entries=0), client=fake).test_client()
    event = {"event_action": "trigger", "payload": {"summary": "s", "source": "db1",
                                                    "severity": "critical"}}
    assert off.post("/v2/enqueue", json=event).status_code == 202
    assert fake.xlen(NAMES.history) == 0
