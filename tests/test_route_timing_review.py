"""Review of issue 30's muted routes: what the sender is told and what is counted when a
muted route with channels suppresses its PagerDuty event."""

from __future__ import annotations

from datetime import UTC, datetime

from relay.router import Router, outcome, why
from relay.routes import commands
from relay.routes.channels import Channel, Use
from relay.routes.config import Route as Rule
from relay.routes.timing import Timing
from tests.test_route_timing import ALWAYS, NOW, event


def test_a_muted_route_with_channels_says_it_suppressed_the_event() -> None:
    """Its channels still hear of it, but PagerDuty does not get it because the route is
    muted: the answer and the count say so (they said "sent to channels only ... by
    route muted:pay", as for a route with channels and no keys)."""
    rule = Rule("pay", keys=("day",), timing=Timing(mute=("always",)),
                channels=(Use("chat"),))
    quiet = Router(["K-day"], names=["day"], rules=[rule], intervals=[ALWAYS],
                   channels=[Channel("chat", "slack", url="https://hooks.example/x")])
    route = quiet.route("alert", event("error"), "", {}, NOW)
    assert not isinstance(route, str)
    assert (route.slot, route.rule, route.channels) == (0, "muted:pay", ("chat",))
    assert outcome(route) == "suppressed"
    assert why(route).startswith("suppressed: route pay is muted now")
    assert commands._verdict(None, route) == (  # type: ignore[arg-type]  # routes test
        "route pay: suppressed (not sent), its acknowledge and resolve too")


def test_follow_ups_keep_to_what_the_mute_decided_after_it_ends(tmp_path, keys, fake,
                                                                monkeypatch) -> None:
    """Promise 3 across the end of a mute (nights 22:00-07:00 UTC): a trigger sent to the
    night key at 23:00 has its re-trigger and resolve of 08:00 on the night key too; a
    trigger a route without night keys suppressed at 23:00 has its resolve of 08:00 held,
    not sent (through the app on fakeredis, the accept time moved)."""
    from relay import ingest
    from relay.app import create_app
    from relay.auth import new_token
    from relay.keys import key_id
    from relay.names import Names
    from relay.settings import Settings

    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{keys[0]} day\n{keys[1]} night\n{keys[2]} db\n")
    token, digest = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
time_intervals:
  - name: nights
    time_intervals:
      - times: [{{start_time: "22:00", end_time: "24:00"}},
                {{start_time: "00:00", end_time: "07:00"}}]
sources:
  - name: mon
    api_keys: ["{digest}"]
    routes: [pay, db]
routes:
  - name: pay
    match: ['source="pay1"']
    keys: [day]
    night_keys: [night]
    mute_time_intervals: [nights]
  - name: db
    keys: [db]
    mute_time_intervals: [nights]
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys_file),
                                  "RELAY_ROUTES_FILE": str(routes)})
    client = create_app(settings, client=fake).test_client()
    night = int(datetime(2026, 12, 24, 23, 0, tzinfo=UTC).timestamp() * 1000)
    day = int(datetime(2026, 12, 25, 8, 0, tzinfo=UTC).timestamp() * 1000)

    def send(at_ms: int, body: dict[str, object]) -> str:
        monkeypatch.setattr(ingest, "now_ms", lambda: at_ms)
        reply = client.post("/v2/enqueue", json=body, headers={"X-API-Key": token})
        assert reply.status_code == 202, reply.json
        return str(reply.json["message"])

    def queued() -> list[int]:
        return [int(fake.llen(Names("pdr").queue(key_id(k)))) for k in keys]

    pay = {"event_action": "trigger", "dedup_key": "p1",
           "payload": {"summary": "s", "source": "pay1", "severity": "warning"}}
    db = dict(pay, dedup_key="d1", payload=dict(pay["payload"], source="db1"))
    assert send(night, pay) == "Event queued"
    assert send(night, db).startswith("Suppressed: route db is muted now")
    assert send(day, pay) == "Event queued"  # the route is not muted now: still night's
    assert send(day, {"event_action": "resolve", "dedup_key": "p1"}) == "Event queued"
    assert send(day, {"event_action": "resolve", "dedup_key": "d1"}).startswith("Held with")
    assert queued() == [0, 3, 0]  # all of p1 on the night key; d1 none


def test_a_source_may_take_its_routes_night_keys_and_no_other_key(tmp_path, keys, fake
                                                                  ) -> None:
    """Promise 7 with night keys: a source given route pay may send by it (to its night
    key while it is muted) and name pay's night key, not another key, nor take another
    route, muted or not (through the app on fakeredis)."""
    from relay.app import create_app
    from relay.auth import new_token
    from relay.settings import Settings

    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{keys[0]} day\n{keys[1]} night\n{keys[2]} other\n")
    token, digest = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
time_intervals:
  - name: always
    time_intervals: [{{}}]
sources:
  - name: mon
    api_keys: ["{digest}"]
    routes: [pay]
routes:
  - name: pay
    match: ['source="pay1"']
    keys: [day]
    night_keys: [night]
    mute_time_intervals: [always]
  - name: other
    keys: [other]
    mute_time_intervals: [always]
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys_file),
                                  "RELAY_ROUTES_FILE": str(routes)})
    client = create_app(settings, client=fake).test_client()

    def status(body: dict[str, object]) -> int:
        return int(client.post("/v2/enqueue", json=body, headers={"X-API-Key": token})
                   .status_code)

    pay = {"event_action": "trigger", "dedup_key": "p1",
           "payload": {"summary": "s", "source": "pay1", "severity": "warning"}}
    assert status(pay) == 202
    assert status(dict(pay, dedup_key="p2", routing_key=keys[1])) == 202  # pay's night key
    assert status(dict(pay, dedup_key="p3", routing_key=keys[2])) == 403  # another key
    other = dict(pay, dedup_key="o1", payload=dict(pay["payload"], source="web1"))
    assert status(other) == 403  # route other, muted (suppressed) or not, is not its
