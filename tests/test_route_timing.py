"""A muted route (quiet hours: mute_time_intervals, active_time_intervals): its events
below muted_min_severity go to its night keys, or are suppressed; the rest as usual; its
follow-ups follow their trigger (through the Flask app on fakeredis: the event store's
Lua decides where follow-ups go)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from relay.app import create_app
from relay.auth import new_token
from relay.keys import key_id
from relay.names import Names
from relay.router import Router, outcome, why
from relay.routes.config import Route as Rule
from relay.routes.intervals import Spec, TimeInterval
from relay.routes.timing import Timing
from relay.settings import Settings

NAMES = Names("pdr")
ALWAYS = TimeInterval("always", (Spec(),))  # a spec with no fields holds at every moment
NEVER = TimeInterval("never", (Spec(years=((2000, 2000),)),))
NOW = datetime(2026, 12, 24, 23, 0, tzinfo=UTC).timestamp()


def event(severity: str, dedup_key: str | None = None) -> dict[str, object]:
    found: dict[str, object] = {"event_action": "trigger", "payload": {
        "summary": "s", "source": "db1", "severity": severity}}
    if dedup_key:
        found["dedup_key"] = dedup_key
    return found


def router(timing: Timing, night_keys: tuple[str, ...] = ()) -> Router:
    rule = Rule("pay", keys=("day",), timing=timing, night_keys=night_keys)
    return Router(["K-day", "K-night", "K-other"], names=["day", "night", "other"],
                  rules=[rule], intervals=[ALWAYS, NEVER])


@pytest.mark.parametrize(("timing", "severity", "slot", "night"), [
    (Timing(mute=("always",)), "critical", 2, True),  # no muted_min_severity: all muted
    (Timing(mute=("always",), min_severity="error"), "warning", 2, True),
    (Timing(mute=("always",), min_severity="error"), "error", 1, False),
    (Timing(mute=("always",), min_severity="error"), "critical", 1, False),
    (Timing(mute=("never",)), "info", 1, False),
    (Timing(active=("never",)), "info", 2, True),  # outside its active times: muted
    (Timing(active=("always",)), "info", 1, False),
    (Timing(active=("always",), mute=("always",)), "info", 2, True),
])
def test_a_muted_route_sends_what_is_below_its_least_severity_to_its_night_keys(
        timing: Timing, severity: str, slot: int, night: bool) -> None:
    route = router(timing, ("night",)).route("alert", event(severity), "", {}, NOW)
    assert not isinstance(route, str)
    assert (route.slot, route.night, route.rule) == (slot, night, "pay")


def test_a_muted_route_without_night_keys_suppresses_and_says_why() -> None:
    quiet = router(Timing(mute=("always",), min_severity="critical"))
    route = quiet.route("alert", event("error"), "", {}, NOW)
    assert not isinstance(route, str)
    assert (route.slot, route.rule, outcome(route)) == (0, "muted:pay", "suppressed")
    assert why(route) == ("suppressed: route pay is muted now (its mute_time_intervals or "
                          "active_time_intervals) and has no night_keys")
    loud = quiet.route("alert", event("critical"), "", {}, NOW)
    assert not isinstance(loud, str) and (loud.slot, loud.rule) == (1, "pay")
    change = quiet.route("change", {"payload": {"summary": "deploy", "source": "ci"}}, "", {},
                         NOW)  # a change event counts as info
    assert not isinstance(change, str) and change.rule == "muted:pay"


def test_follow_ups_and_named_keys_are_not_decided_by_the_timing() -> None:
    quiet = router(Timing(mute=("always",)))
    ack = quiet.route("alert", {"event_action": "acknowledge", "dedup_key": "x"}, "", {}, NOW)
    assert not isinstance(ack, str) and (ack.rule, ack.night) == ("default", False)
    named = quiet.route("alert", dict(event("info"), routing_key="K-other"), "", {}, NOW)
    assert not isinstance(named, str) and (named.slot, named.rule) == (-3, "routing-key")


def test_night_keys_that_all_drain_fall_back_to_every_key_in_service() -> None:
    rule = Rule("pay", keys=("day",), timing=Timing(mute=("always",)), night_keys=("night",))
    draining = Router(["K-day", "K-night"], frozenset({"K-night"}), ["day", "night"], [rule],
                      intervals=[ALWAYS])
    route = draining.route("alert", event("info"), "", {}, NOW)
    assert not isinstance(route, str) and (route.slot, route.night) == (1, True)


@pytest.fixture
def quiet_app(tmp_path: Path, keys: tuple[str, ...], fake):
    """Routes muted at every moment: ``pay`` with night keys, ``db`` without; a source
    that may take only them."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{keys[0]} day\n{keys[1]} night\n{keys[2]} db\n")
    token, digest = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
time_intervals:
  - name: always
    time_intervals: [{{}}]
sources:
  - name: mon
    api_keys: ["{digest}"]
    routes: [pay, db]
routes:
  - name: pay
    match: ['source="pay1"']
    keys: [day]
    night_keys: [night]
    mute_time_intervals: [always]
    muted_min_severity: critical
  - name: db
    keys: [db]
    mute_time_intervals: [always]
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys_file),
                                  "RELAY_ROUTES_FILE": str(routes)})
    return create_app(settings, client=fake).test_client(), {"X-API-Key": token}


def queued_on(fake, key: str) -> int:
    return int(fake.llen(NAMES.queue(key_id(key))))


def test_through_the_app_night_keys_suppression_and_held_follow_ups(quiet_app, keys,
                                                                    fake) -> None:
    client, auth = quiet_app

    def send(body: dict[str, object]) -> str:
        reply = client.post("/v2/enqueue", json=body, headers=auth)
        assert reply.status_code == 202, reply.json
        return str(reply.json["message"])

    pay = {"event_action": "trigger", "dedup_key": "p1",
           "payload": {"summary": "s", "source": "pay1", "severity": "warning"}}
    assert send(pay) == "Event queued"
    assert send(dict(pay, dedup_key="p2", payload=dict(pay["payload"], severity="critical"))) \
        == "Event queued"
    assert (queued_on(fake, keys[0]), queued_on(fake, keys[1])) == (1, 1)  # day, night
    db = dict(pay, dedup_key="d1", payload=dict(pay["payload"], source="db1"))
    assert send(db) == ("Suppressed: route db is muted now (its mute_time_intervals or "
                        "active_time_intervals) and has no night_keys")
    assert send({"event_action": "resolve", "dedup_key": "d1"}).startswith("Held with its")
    assert send({"event_action": "resolve", "dedup_key": "p1"}) == "Event queued"
    assert (queued_on(fake, keys[0]), queued_on(fake, keys[1]), queued_on(fake, keys[2])) == \
        (1, 2, 0)  # p1's resolve followed it to the night key; d1's was held with it
