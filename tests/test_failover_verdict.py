"""The failover drill's verdict (scripts/failover_verdict.py): the counts, the worst
window per key and the longest gaps, against examples and brute force."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # bench
spec = importlib.util.spec_from_file_location(
    "failover_verdict", Path(__file__).resolve().parents[1] / "scripts" / "failover_verdict.py")
assert spec and spec.loader
verdict = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verdict)

times = st.lists(st.floats(0, 100, allow_nan=False), max_size=40)


@given(times, st.floats(0.5, 30))
def test_worst_window_is_the_most_in_any_window(found: list[float], window: float) -> None:
    # the busiest half-open window can always start at one of the times
    brute = max((sum(1 for t in found if s <= t < s + window) for s in found), default=0)
    assert verdict.worst_window(found, window) == brute


@given(times, st.floats(0, 50), st.floats(0, 50))
def test_longest_gap_is_the_widest_stretch_without_a_time(found: list[float], a: float,
                                                          b: float) -> None:
    start, end = min(a, b), min(a, b) + abs(a - b) + 1
    inside = [t for t in found if start <= t <= end]
    points = [start, end, *inside]
    brute = max(q - p for p in points for q in points
                if p <= q and not any(p < t < q for t in inside))
    assert verdict.longest_gap(found, start, end) == brute


def event(key: str, action: str, at: float, status: int = 202,
          routing_key: str = "k1") -> dict[str, Any]:
    return {"dedup_key": key, "event_action": action, "at": at, "status": status,
            "kind": "alert", "routing_key": routing_key}


def run(accepted: dict[str, float], events: list[dict[str, Any]],
        counts: dict[str, Any] | None = None, limit: int = 10) -> dict[str, Any]:
    return verdict.tally(accepted, events, counts or {}, limit, 10.0, 0.0, 20.0, 30.0)


def test_a_clean_run_passes() -> None:
    row = run({"a/0": 1.0, "a/1": 2.0, "a/2": 3.0},
              [event("a", "trigger", 1.5), event("a", "acknowledge", 2.5),
               event("a", "resolve", 3.5)])
    assert row["accepted"] == row["delivered"] == 3
    assert (row["lost"], row["duplicates"], row["order violations"]) == (0, 0, 0)
    assert row["worst window"] == 3 and row["over limit"] == 0
    assert row["no 202 (s)"] == 17.0  # from the last 202 (3 s) to the load's end (20 s)
    assert row["no delivery (s)"] == 16.5  # from 3.5 s to the load's end (20 s)
    assert not verdict.failed(row)


def test_a_202_never_delivered_is_lost_and_fails() -> None:
    row = run({"a/0": 1.0, "a/1": 2.0}, [event("a", "trigger", 1.5)])
    assert row["lost"] == 1 and verdict.failed(row)


def test_a_refused_send_is_no_delivery_and_a_resend_a_duplicate() -> None:
    row = run({"a/0": 1.0}, [event("a", "trigger", 1.5, status=429),
                             event("a", "trigger", 2.0), event("a", "trigger", 2.5)])
    assert (row["lost"], row["duplicates"]) == (0, 1) and not verdict.failed(row)


def test_a_follow_up_before_its_trigger_is_an_order_violation() -> None:
    row = run({"a/0": 1.0, "a/1": 2.0},
              [event("a", "acknowledge", 2.5), event("a", "trigger", 3.0)],
              {"orphans": 1, "late_triggers": 1})
    assert row["order violations"] >= 1 and verdict.failed(row)
    assert verdict.disorders([event("a", "acknowledge", 2.5), event("a", "trigger", 3.0),
                              event("b", "trigger", 3.5), event("b", "trigger", 4.0)]) == {
        "a": ["acknowledge@k1+2.5s", "trigger@k1+3.0s"]}  # b's repeat is a duplicate, in order


def test_misrouted_fails() -> None:
    row = run({"a/0": 1.0}, [event("a", "trigger", 1.5)], {"misrouted": 1})
    assert row["misrouted"] == 1 and verdict.failed(row)


def test_more_requests_to_a_key_in_a_window_than_its_limit_fails() -> None:
    sends = [event(f"i{n}", "trigger", n * 0.5, routing_key="k1") for n in range(4)]
    sends += [event(f"j{n}", "trigger", n * 4.0, routing_key="k2") for n in range(4)]
    row = run({f"i{n}/0": 0.0 for n in range(4)} | {f"j{n}/0": 0.0 for n in range(4)},
              sends, limit=3)
    assert row["worst window"] == 4 and row["over limit"] == 1 and verdict.failed(row)


def test_the_delivery_gap_runs_to_the_last_delivery_not_to_the_wait_for_the_lost() -> None:
    row = run({"a/0": 1.0, "b/0": 2.0, "c/0": 3.0},
              [event("a", "trigger", 1.5), event("b", "trigger", 12.0)])
    assert row["lost"] == 1  # c never came: the wait for it (to 30 s) is no gap
    assert row["no delivery (s)"] == 10.5  # 1.5 s to 12 s (to 30 s: 18)


def page(check: str, action: str) -> dict[str, Any]:
    return {"dedup_key": f"heartbeat:{check}", "event_action": action, "status": 202}


def test_heartbeat_pages_alternate_trigger_resolve_per_outage() -> None:
    arrivals = [page("a", "trigger"), page("b", "trigger"), page("a", "resolve"),
                page("a", "trigger"), page("b", "resolve"), page("a", "resolve")]
    found = verdict.alternated(arrivals)
    assert found == {"incidents": {"a": 2, "b": 1}, "duplicates": 0, "order violations": 0,
                     "open": []}


def test_a_second_trigger_in_one_outage_is_a_duplicate_not_an_incident() -> None:
    arrivals = [page("a", "trigger"), page("a", "trigger"), page("a", "resolve"),
                page("a", "resolve")]
    found = verdict.alternated(arrivals)
    assert found["incidents"] == {"a": 1} and found["duplicates"] == 2
    assert found["order violations"] == 0


def test_a_resolve_before_any_trigger_is_an_order_violation_and_a_trigger_left_open() -> None:
    found = verdict.alternated([page("a", "resolve"), page("a", "trigger")])
    assert found["order violations"] == 1 and found["open"] == ["heartbeat:a"]
    assert found["incidents"] == {"a": 1}


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["trigger", "resolve"])),
                max_size=30))
def test_every_arrival_is_an_incident_a_duplicate_a_violation_or_a_resolve(
        sent: list[tuple[str, str]]) -> None:
    found = verdict.alternated([page(check, action) for check, action in sent])
    resolves = sum(1 for _, action in sent if action == "resolve")
    closing = resolves - sum(1 for n, (check, action) in enumerate(sent)
                             if action == "resolve" and (
                                 not (before := [a for c, a in sent[:n] if c == check])
                                 or before[-1] == "resolve"))
    assert (sum(found["incidents"].values()) + found["duplicates"]
            + found["order violations"] + closing) == len(sent)


def test_the_heartbeats_drill_counts_lost_outages_extra_incidents_and_races_won() -> None:
    drill = importlib.import_module("heartbeats_drill")  # (scripts/ is on sys.path above)
    checks = [drill.Check("a", 0), drill.Check("b", 1), drill.Check("c", 0)]
    plan = drill.Plan(outages=[("a", 10.0, 20.0, True), ("c", 30.0, 40.0, False),
                               ("b", 10.0, 12.0, True)], races=["a", "b"], killed_at=11.0)
    keys = ["k0", "k1"]
    arrivals = [dict(page(name, action), routing_key=key) for name, action, key in (
        ("a", "trigger", "k0"), ("a", "resolve", "k0"),  # the first outage
        ("a", "trigger", "k0"), ("a", "resolve", "k0"),  # its race, won by the evaluation
        ("b", "trigger", "k1"), ("b", "resolve", "k1"),  # its outage
        ("b", "trigger", "k0"), ("b", "resolve", "k0"),  # its race: on a's key
        ("b", "trigger", "k1"), ("b", "resolve", "k1"))]  # and one no silence explains
    row = drill.verdict(plan, checks, arrivals, keys)
    assert row["lost"] == 1  # c's outage never paged
    assert row["extra incidents"] == 1 and row["misrouted"] == 2
    assert row["drill"].startswith("heartbeats (3 outages, 2 across the restart, 2 paged; "
                                   "2 pings at the deadline, 2 after the page; "
                                   "0 unreachable past the deadline; 1 extra incidents)")


def test_a_check_unreachable_past_its_deadline_may_be_paged_once() -> None:
    """A check that came back up between the silence and the kill: its pings fail past
    its deadline while the relay restarts, and the page it then gets is right (once)."""
    drill = importlib.import_module("heartbeats_drill")
    checks = [drill.Check("a", 0)]
    arrivals = [dict(page("a", action), routing_key="k0")
                for action in ("trigger", "resolve", "trigger", "resolve", "trigger", "resolve")]
    plan = drill.Plan(outages=[("a", 10.0, 20.0, True)], unreachable=["a"], killed_at=21.0)
    assert drill.verdict(plan, checks, arrivals, ["k0"])["extra incidents"] == 1
    plan.unreachable.append("a")  # unreachable twice: both pages explained
    assert drill.verdict(plan, checks, arrivals, ["k0"])["extra incidents"] == 0
