"""Attacks on incident ownership found by review (issue 23), each a test that failed on
the first version: an acknowledge sent before a trigger chose where the trigger went; a
source bound to its route paged another key that way, or through a route whose keys all
drain; acknowledges evicted an open incident so a stranger could take it and close it;
a resolve and an acknowledge in one command kept the old owner; a source named
`anonymous` owned nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.auth import digest, new_token
from relay.errors import ConfigError
from relay.keys import choose_key, key_id
from relay.router import Route, incident_id
from relay.routes.config import load
from relay.store import EventStore, Record
from tests.conftest import trigger
from tests.test_ownership import NAMES, SOURCES, event, post, relay


@pytest.fixture
def tokens() -> dict[str, str]:
    return {name: new_token()[0] for name in SOURCES}


@pytest.fixture
def owned(settings, tmp_path: Path, tokens: dict[str, str], fake) -> Any:
    return relay(settings, tmp_path, tokens, fake)


def test_an_acknowledge_sent_first_does_not_send_a_teams_page_to_another_key(
        owned, tokens, settings, fake) -> None:
    """The holder of the key `other` acknowledges, naming its key, the dedup_key payments'
    next platform event will use; that trigger (payments-ci's: it opens the incident and
    owns it) is then queued on `other`, not on payments' key: the payments team is not
    paged, the attacker's service is."""
    payments, _, other = settings.routing_keys
    answer = post(owned, event("acknowledge", "payments:deploy_failed"), key=other)
    assert answer.status_code == 202
    answer = owned.post("/platform-event", headers={"X-API-Key": tokens["payments-ci"]}, json={
        "type": "deploy_failed", "level": "critical", "service": "payments",
        "message": "deploy of payments failed"})
    assert answer.status_code == 202, answer.json
    on_payments = fake.lrange(NAMES.queue(key_id(payments)), 0, -1)
    assert any('"trigger"' in raw for raw in on_payments), \
        fake.lrange(NAMES.queue(key_id(other)), 0, -1)


def test_a_source_bound_to_its_route_never_pages_another_teams_key(owned, tokens, settings,
                                                                    fake) -> None:
    payments, db_team, _ = settings.routing_keys
    # a dedup_key whose hash, over every key, picks db-team's (the attacker tries a few)
    dedup_key = next(f"pay-{n}" for n in range(1000)
                     if choose_key(settings.routing_keys, f"pay-{n}") == db_team)
    answer = post(owned, event("acknowledge", dedup_key), tokens["payments-ci"])
    assert answer.status_code == 202, answer.json
    answer = post(owned, event("trigger", dedup_key), tokens["payments-ci"])
    # its route is payments: the trigger must go to payments' key, or be refused
    queued_on_db = fake.lrange(NAMES.queue(key_id(db_team)), 0, -1)
    triggers_on_db = [raw for raw in queued_on_db if '"trigger"' in raw]
    assert answer.status_code == 403 or not triggers_on_db, (
        answer.status_code, "payments-ci's trigger was queued on db-team's key")


def test_a_source_bound_to_a_drained_route_pages_no_other_key(settings, tmp_path: Path,
                                                              tokens, fake) -> None:
    payments, db_team, other = settings.routing_keys
    app = relay(settings, tmp_path, tokens, fake, draining_keys=frozenset({payments}))
    answer = post(app, event("trigger", "pay-9"), tokens["payments-ci"])
    foreign = [raw for key in (db_team, other)
               for raw in fake.lrange(NAMES.queue(key_id(key)), 0, -1)]
    assert answer.status_code == 403 or not foreign, (answer.status_code, foreign)


def test_another_sender_cannot_evict_and_then_close_an_incident(settings, tmp_path: Path,
                                                                tokens, fake) -> None:
    payments = settings.routing_keys[0]
    app = relay(settings, tmp_path, tokens, fake, incidents_max=3)
    assert post(app, event("trigger", "pay-victim"), tokens["payments-ci"]).status_code == 202
    assert post(app, event("resolve", "pay-victim"), tokens["dba"]).status_code == 403
    # dba acknowledges dedup_keys that hash to the payments key: nothing pages
    junk = [f"junk-{n}" for n in range(200)
            if choose_key(settings.routing_keys, f"junk-{n}") == payments][:3]
    assert post(app, [event("acknowledge", k) for k in junk], tokens["dba"]).status_code == 202
    takeover = post(app, event("trigger", "pay-victim"), tokens["dba"])
    close = post(app, event("resolve", "pay-victim"), tokens["dba"])
    assert 403 in (takeover.status_code, close.status_code), \
        "dba took payments-ci's open incident and resolved it"


def test_a_resolve_and_an_acknowledge_in_one_request_forget_the_owner(owned, tokens,
                                                                      fake) -> None:
    assert post(owned, event("trigger", "db-1", "db", source="db1"),
                tokens["dba"]).status_code == 202
    batch = [event("resolve", "db-1"), event("acknowledge", "db-1")]
    assert post(owned, batch, tokens["dba"]).status_code == 202
    owner = fake.hget(NAMES.owners, incident_id("db-1"))
    answer = post(owned, event("trigger", "db-1"), tokens["payments-ci"])
    assert answer.status_code == 202, (owner, answer.json)


def test_a_resolve_and_an_acknowledge_in_one_group_commit_forget_the_owner(settings,
                                                                           fake) -> None:
    store = EventStore(fake, NAMES, settings)
    incident = incident_id("db-2")

    def item(action: str, sender: str) -> tuple[Route, str, str, str, str]:
        body = trigger(dedup_key="db-2") if action == "trigger" else \
            {"event_action": action, "dedup_key": "db-2"}
        return (Route(1, incident, action, "default"),
                Record("alert", body, 0).encode(), "", "", sender)

    assert store.enqueue([[item("trigger", "s:dba")]]) == [1]
    # dba's resolve and another request's acknowledge share one command (relay/commit.py)
    assert store.enqueue([[item("resolve", "s:dba")], [item("acknowledge", "*s:fixer")]]) \
        == [1, 1]
    owner = fake.hget(NAMES.owners, incident)
    # payments-ci opens the incident anew: the resolve forgot dba's
    answers = store.enqueue([[item("trigger", "s:payments-ci")]])
    assert answers == [1], (owner, answers)


def test_no_source_may_take_the_name_of_senders_that_are_not_sources(tmp_path: Path) -> None:
    """A source named `anonymous` was taken for an anonymous sender: its incidents were
    anyone's. Such names are now refused when the routes file is checked."""
    path = tmp_path / "routes.yml"
    for word in ("anonymous", "routing-key", "pd-relay"):
        path.write_text(f"""
sources:
  - name: {word}
    api_keys: ["{digest(new_token()[0])}"]
""")
        with pytest.raises(ConfigError, match="names senders that are not sources"):
            load(path, ())
