"""The storm benchmark's scenario and its judge (scripts/storm.py): the judge must see
an incident out of order, a lost newest trigger or resolve, and time to page."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

SPEC = importlib.util.spec_from_file_location(
    "storm", Path(__file__).resolve().parents[1] / "scripts" / "storm.py")
assert SPEC is not None and SPEC.loader is not None
storm: Any = importlib.util.module_from_spec(SPEC)
sys.modules["storm"] = storm  # its dataclasses look themselves up there
SPEC.loader.exec_module(storm)


def arrived(key: str, action: str, seq: int, at: float, status: int = 202) -> dict[str, Any]:
    return {"dedup_key": key, "event_action": action, "status": status, "at": at,
            "custom_details": {"seq": seq} if action == "trigger" else None}


def test_the_scenario_is_the_issues_storm() -> None:
    timed = storm.scenario(6.0)
    keys = {event["dedup_key"] for _, event in timed}
    assert len([k for k in keys if k.startswith("flap-")]) == 300
    assert len([k for k in keys if k.startswith("crit-")]) == 60
    severities = {event["payload"]["severity"] for _, event in timed if "payload" in event}
    assert severities == {"info", "warning", "critical"}
    assert [at for at, _ in timed] == sorted(at for at, _ in timed)
    resolves = [at for at, event in timed if event["event_action"] == "resolve"]
    assert len(resolves) == 60 and max(resolves) < 12.0  # a window after each start


def test_the_judge_counts_order_losses_and_waits() -> None:
    sent = storm.Sent(accepted={("crit-1", 1): 10.0, ("crit-1", 0): 11.0, ("flap-1", 1): 10.0,
                                ("flap-1", 2): 10.5, ("flap-2", 1): 10.0})
    good = [arrived("crit-1", "trigger", 1, 12.0), arrived("crit-1", "resolve", 0, 13.0),
            arrived("flap-1", "trigger", 2, 12.5), arrived("flap-2", "trigger", 1, 12.0)]
    found = storm.judge(good, sent, 5.0, 10.0, 5)
    assert (found["out_of_order"], found["lost"], found["not_sent"]) == (0, 0, 1)
    assert found["critical_p50_s"] == 20.0 and found["drained_s"] == 50.0
    swapped = [good[1], good[0]] + good[2:]  # the resolve before its trigger
    assert storm.judge(swapped, sent, 5.0, 10.0, 5)["out_of_order"] == 1
    missing = good[:1] + good[2:]  # the resolve never arrived
    assert storm.judge(missing, sent, 5.0, 10.0, 5)["lost"] == 1
    behind = good + [arrived("flap-1", "trigger", 1, 14.0)]  # an older repeat after a newer
    assert storm.judge(behind, sent, 5.0, 10.0, 5)["out_of_order"] == 1
