"""The PagerDuty stand-in itself: validation, throttling window, orphans, faults."""

import json

import pytest

from simulator.pagerduty import THROTTLED, Simulator
from tests.conftest import make_key, trigger


def send(sim: Simulator, event: object, path: str = "/v2/enqueue") -> tuple[str, int, dict]:
    return sim.handle(path, json.dumps(event).encode())


def test_valid_events_are_accepted_as_pagerduty_answers() -> None:
    sim = Simulator(seed=1)
    fate, status, reply = send(sim, trigger(routing_key=make_key(), dedup_key="a"))
    assert (fate, status) == ("answer", 202)
    assert reply == {"status": "success", "message": "Event processed", "dedup_key": "a"}


def test_invalid_events_get_pagerduty_errors() -> None:
    sim = Simulator(seed=1)
    _, status, reply = send(sim, {"routing_key": "short", "event_action": "trigger"})
    assert status == 400 and reply["status"] == "invalid event"
    assert reply["errors"][0] == "Length of 'routing_key' is incorrect (should be 32 characters)"


def test_each_key_is_throttled_over_its_window() -> None:
    sim = Simulator(seed=1, limit=5, window_s=60)
    key, other = make_key(), make_key()
    statuses = [send(sim, trigger(routing_key=key))[1] for _ in range(7)]
    assert statuses == [202] * 5 + [429] * 2
    assert send(sim, trigger(routing_key=key))[2] == THROTTLED
    assert send(sim, trigger(routing_key=other))[1] == 202


def test_ordering_violations_are_counted_as_pagerduty_would_suffer_them() -> None:
    sim = Simulator(seed=1)
    a, b = make_key(), make_key()
    send(sim, {"routing_key": a, "event_action": "resolve", "dedup_key": "x"})
    send(sim, trigger(routing_key=a, dedup_key="x"))  # after its resolve: never resolved
    send(sim, trigger(routing_key=a, dedup_key="y"))
    send(sim, {"routing_key": b, "event_action": "acknowledge", "dedup_key": "y"})
    send(sim, {"routing_key": a, "event_action": "resolve", "dedup_key": "y"})
    send(sim, {"routing_key": a, "event_action": "resolve", "dedup_key": "y"})  # a resend
    counts = sim.counts
    assert (counts["orphans"], counts["late_triggers"], counts["misrouted"]) == (1, 1, 1)
    assert counts["repeats"] == 1 and counts["202"] == 6


@pytest.mark.parametrize(("body", "error"), [
    (b'{"routing_key": "%s", "event_action": "trigger", "payload": {"summary": "s", '
     b'"source": "h", "severity": "info", "custom_details": {"n": NaN}}}', "Malformed JSON"),
    (b'{"routing_key": "%s", "event_action": "resolve"}', "'dedup_key' is missing or blank"),
    (b'{"routing_key": "%s", "event_action": "trigger", "payload": {"summary": "s", '
     b'"source": "h", "severity": "high"}}', "'payload.severity' is invalid"),
    (b'{"routing_key": "%s", "event_action": "trigger", "payload": {"summary": "s", '
     b'"source": "h", "severity": "info"}, "pad": "' + b"x" * 512_000 + b'"}',
     "Event is too large"),
])
def test_pagerduty_refuses_what_its_contract_refuses(body: bytes, error: str) -> None:
    fate, status, reply = Simulator(seed=1).handle("/v2/enqueue", body % make_key().encode())
    assert status == 400 and any(error in e for e in reply["errors"]), reply


@pytest.mark.parametrize(("fault", "fate", "status"), [
    ({"fail_rate": 1.0, "fail_status": 503}, "answer", 503),
    ({"throttle_rate": 1.0}, "answer", 429),
    ({"reject_rate": 1.0}, "answer", 400),
    ({"drop_rate": 1.0}, "drop", 0),
    ({"slow_rate": 1.0, "slow_s": 0.5}, "slow", 202),
])
def test_faults_can_be_injected(fault: dict, fate: str, status: int) -> None:
    sim = Simulator(seed=1)
    sim.configure(fault)
    assert send(sim, trigger(routing_key=make_key()))[:2] == (fate, status)


def test_unknown_fault_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="fail_ratio"):
        Simulator().configure({"fail_ratio": 1})
