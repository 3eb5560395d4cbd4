"""End to end, storm mode: real Redis, ingress, worker and simulator processes. A key
with a backlog sends its critical page first, merges waiting repeats into one request
that says so, and each merged event's story names the trigger it went into."""

from __future__ import annotations

import json

from relay.stack.processes import wait_until
from tests.conftest import trigger


def flap(n: int) -> dict[str, object]:
    event = trigger(f"disk flapping #{n}", dedup_key="flap")
    event["payload"] = dict(event["payload"], severity="warning",  # type: ignore[arg-type]
                            custom_details={"n": n})
    return event


def test_a_backlog_sends_the_page_first_and_merges_repeats(make_stack) -> None:
    stack = make_stack(keys=1, RELAY_STORM_MODE="always", RELAY_UI_OPEN_VIEW="true")
    stack.start_simulator()
    node = stack.start_ingress()
    for n in range(1, 6):  # no worker yet: a backlog
        assert stack.post(flap(n)).status_code == 202
    assert stack.post(trigger("db down", dedup_key="db")).status_code == 202
    assert stack.post({"event_action": "resolve", "dedup_key": "flap"}).status_code == 202
    assert stack.post(flap(6)).status_code == 202  # after the resolve: never merged
    stack.start_worker(0)
    events = wait_until(lambda: len(got := stack.sim_get("events")["events"]) >= 4 and got, 30,
                        "the backlog delivered")
    assert [(e["dedup_key"], e["event_action"]) for e in events] == [
        ("db", "trigger"), ("flap", "trigger"), ("flap", "resolve"), ("flap", "trigger")]
    merged = events[1]["custom_details"]
    assert merged["n"] == 5 and merged["pd_relay"]["coalesced"] == 5
    assert events[3]["custom_details"] == {"n": 6}
    status = json.loads(stack.cli("status", "--json").stdout)
    row = status["keys"][0] if isinstance(status, dict) else status[0]
    assert row["coalesced"] == 4 and row["delivered"] == 4
    found = stack.session.get(node + "/api/v1/events", params={"dedup_key": "flap",
                                                                "state": "coalesced"},
                              timeout=10).json()["events"]
    assert len(found) == 4
    story = found[-1]  # the oldest: each names the newer repeat it went into
    for _ in range(4):
        story = stack.session.get(f"{node}/api/v1/events/{story['steps'][-1]['coalesced_into']}",
                                  timeout=10).json()
    assert story["state"] == "delivered" and story["action"] == "trigger"
    text = stack.cli("trace", "flap").stdout
    assert text.count("merged after") == 4


def test_the_deepest_event_admitted_is_sorted_in_its_incident(make_stack) -> None:
    """Issue 24 (2): Redis's JSON decoder (cjson) refuses nesting past 1,000 levels, and
    the ingress once took deeper events: such a trigger was sorted outside its incident
    and its resolve went first. The ingress's limit (relay/body.py MAX_DEPTH, 64) is far
    inside cjson's: the deepest event it admits is counted in its incident, so a critical
    trigger of another incident may go first, but never the deep one's resolve."""
    from relay.body import MAX_DEPTH
    from relay.keys import key_id
    from relay.names import Names

    stack = make_stack(keys=1, RELAY_STORM_MODE="always")
    stack.start_simulator()
    stack.start_ingress()
    details: object = []
    for _ in range(MAX_DEPTH - 4):  # event, payload, custom_details, then 61 lists
        details = [details]
    deep = trigger("deep", dedup_key="deep")
    deep["payload"] = dict(deep["payload"], severity="info",  # type: ignore[arg-type]
                           custom_details={"x": details})
    assert stack.post(deep).status_code == 202
    deeper = dict(deep, payload=dict(deep["payload"], custom_details={"x": [details]}))
    assert stack.post(deeper).status_code == 400  # one level more: refused
    assert stack.post({"event_action": "resolve", "dedup_key": "deep"}).status_code == 202
    assert stack.post(trigger("page", dedup_key="page")).status_code == 202
    stack.start_worker(0)
    events = wait_until(lambda: len(got := stack.sim_get("events")["events"]) >= 3 and got, 30,
                        "the backlog delivered")
    assert [(e["dedup_key"], e["event_action"]) for e in events] == [
        ("page", "trigger"), ("deep", "trigger"), ("deep", "resolve")]
    pending = stack.redis.client().hgetall(Names().pending(key_id(stack.keys[0])))
    assert not any(v.split()[1] != "0" for f, v in pending.items() if not f.startswith("#"))
