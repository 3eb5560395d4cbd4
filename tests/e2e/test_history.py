"""End to end: every event's story, with real ingress, worker, Redis and simulator
processes: `pd-relay trace` answers "where is my alert?"."""

from __future__ import annotations

import json

from relay.stack.processes import wait_until
from tests.conftest import trigger


def test_trace_tells_each_events_story(make_stack) -> None:
    stack = make_stack(keys=1)
    stack.start_simulator()
    stack.start_ingress()
    stack.sim_config(fail_rate=1.0, fail_status=502)  # PagerDuty down at first
    assert stack.post(trigger("disk full", dedup_key="disk")).status_code == 202
    assert stack.post({"event_action": "resolve", "dedup_key": "disk"}).status_code == 202
    stack.start_worker(0)

    def stories() -> list[dict[str, object]]:
        found = stack.cli("trace", "disk", "--json")
        return json.loads(found.stdout) if found.returncode == 0 else []

    wait_until(lambda: any(s["steps"][-1]["step"] == "attempt" for s in stories()), 20,
               "a failed attempt in the story")
    stack.sim_config(fail_rate=0.0)
    done = wait_until(lambda: (got := stories()) and [s["state"] for s in got] == [
        "delivered", "delivered"] and got, 30, "both events delivered")
    trigger_story, resolve_story = done
    assert [step["action"] for step in (trigger_story["steps"][0], resolve_story["steps"][0])] == [
        "trigger", "resolve"]
    steps = [step["step"] for step in trigger_story["steps"]]
    assert steps[0] == "accepted" and steps[-1] == "delivered"
    assert "attempt" in steps and all(s == "attempt" for s in steps[1:-1])
    attempt = trigger_story["steps"][1]
    assert attempt["status"] == 502 and attempt["outcome"] == "retry later"
    accepted = trigger_story["steps"][0]
    assert accepted["route"] == "routing-key" or accepted["route"] == "default"
    assert accepted["client"] == "127.0.0.1" and accepted["key"] == "key-1"
    # the same as text, for people
    text = stack.cli("trace", "disk")
    assert text.returncode == 0 and "dedup_key disk: 2 event(s)" in text.stdout
    assert "queued for key key-1" in text.stdout and "delivered" in text.stdout
    # an incident the relay never saw
    missing = stack.cli("trace", "nothing-like-it")
    assert missing.returncode == 1 and "no event with dedup_key" in missing.stderr


def test_a_refused_event_ends_dead_lettered_in_its_story(make_stack) -> None:
    stack = make_stack(keys=1)
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.sim_config(reject_rate=1.0)
    assert stack.post(trigger("bad", dedup_key="bad-1")).status_code == 202
    story = wait_until(lambda: (found := stack.cli("trace", "bad-1", "--json")).returncode == 0
                       and (got := json.loads(found.stdout)) and got[0]["state"] == "dead"
                       and got[0], 20, "the dead-letter step")
    dead = story["steps"][-1]
    assert dead["status"] == 400 and dead["dead_letter"] and "simulated rejection" in dead["reply"]


def test_the_api_finds_stories_and_the_cap_holds_on_a_real_redis(make_stack) -> None:
    """``MAXLEN ~`` trims whole nodes of a real Redis's stream (100 entries by default):
    the history stays near its cap, and the API answers from what is kept."""
    stack = make_stack(keys=1, RELAY_HISTORY_MAX_ENTRIES="100", RELAY_UI_OPEN_VIEW="true")
    node = stack.start_ingress()
    for n in range(400):
        assert stack.post(trigger("flap", dedup_key=f"flap-{n}")).status_code == 202
    kept = stack.redis.client().xlen("pdr:history")
    assert 100 <= kept <= 200, kept
    api = stack.session.get(node + "/api/v1/events", params={"limit": "500"}, timeout=10)
    found = api.json()["events"]
    assert api.status_code == 200 and len(found) == kept
    assert found[0]["dedup_key"] == "flap-399" and found[-1]["dedup_key"] == f"flap-{400 - kept}"
    one = stack.session.get(f"{node}/api/v1/events/{found[0]['id']}", timeout=10).json()
    assert one["state"] == "queued" and one["key"] == "key-1"
    since = stack.session.get(node + "/api/v1/events", params={"since": "2099-01-01T00:00:00Z"},
                              timeout=10).json()
    assert since["events"] == []
