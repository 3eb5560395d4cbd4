"""What a failover scenario counts (scripts/failover.py): pure functions of what the load
clients were answered 202 to (sequence number -> when) and what the PagerDuty simulator
saw (its ``/_sim/events`` and ``/_sim/stats``), so that tests can check them alone; and
how the drill's rows are published, or why it is skipped."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from bench import publish

ACTIONS = ("trigger", "acknowledge", "resolve")


def worst_window(times: Iterable[float], window_s: float) -> int:
    """The most of ``times`` in any half-open window [t, t + window_s)."""
    ordered, worst, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at >= ordered[first] + window_s:
            first += 1
        worst = max(worst, last - first + 1)
    return worst


def longest_gap(times: Iterable[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] holding none of ``times``."""
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def seq_of(event: dict[str, Any]) -> str:
    return f"{event['dedup_key']}/{ACTIONS.index(event['event_action'])}"


def followed(arrivals: Iterable[dict[str, Any]]) -> tuple[set[str], int]:
    """What PagerDuty took (``arrivals``, its 202s in arrival order): each event's
    ``<dedup_key>/<step>`` once, and how many incidents saw their actions out of the
    order sent (a repeat of the one before is a duplicate, not a violation). Both drills
    count with it."""
    per_incident: dict[str, list[str]] = defaultdict(list)
    delivered: set[str] = set()
    for event in arrivals:
        actions = per_incident[event["dedup_key"]]
        if not actions or actions[-1] != event["event_action"]:
            actions.append(event["event_action"])
        delivered.add(seq_of(event))
    violations = sum(1 for actions in per_incident.values()
                     if actions != list(ACTIONS)[: len(actions)])
    return delivered, violations


def alternated(arrivals: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What PagerDuty took of heartbeat pages (``arrivals``, its 202s in arrival order),
    where one dedup_key carries outage after outage: trigger, resolve, trigger, ...
    Per check (dedup_key without ``heartbeat:``) the incidents opened (a trigger first or
    after a resolve); the repeats of the action before (a second trigger in one outage, a
    second resolve) as duplicates; a resolve before any trigger as an order violation;
    and the dedup_keys still open at the end (last a trigger). The heartbeats drill
    counts with it."""
    last: dict[str, str] = {}
    incidents: dict[str, int] = defaultdict(int)
    duplicates = violations = 0
    for event in arrivals:
        key, action = str(event["dedup_key"]), event["event_action"]
        before = last.get(key)
        if action == before:
            duplicates += 1
        elif action == "trigger":
            incidents[key.removeprefix("heartbeat:")] += 1
        elif before is None:
            violations += 1
        last[key] = action
    return {"incidents": dict(incidents), "duplicates": duplicates,
            "order violations": violations,
            "open": sorted(key for key, action in last.items() if action == "trigger")}


def tally(accepted: dict[str, float], events: list[dict[str, Any]],
          counts: dict[str, Any], limit: int, window_s: float,
          start: float, load_end: float, end: float) -> dict[str, Any]:
    """The verdict of one scenario: ``accepted`` maps each event a client was answered
    202 for (``<dedup_key>/<step>``) to the time of that 202; ``events`` is every request
    the simulator saw, in arrival order; ``limit`` per ``window_s`` is each key's; the
    gaps are measured from the load's ``start``: to its ``load_end`` for the 202s, to the
    last delivery (at least ``load_end``, at most ``end``: the backlog drained or the wait
    for it given up) for deliveries."""
    arrivals = [e for e in events if e["status"] == 202 and e["kind"] == "alert"]
    delivered, violations = followed(arrivals)
    sent: dict[str, list[float]] = defaultdict(list)  # every request to PagerDuty, per key
    for event in events:
        if event["kind"] == "alert":
            sent[str(event["routing_key"])].append(event["at"])
    worst = {key: worst_window(times, window_s) for key, times in sent.items()}
    delivery = [e["at"] for e in arrivals]  # the gap ends at the last (what never came
    # is counted as lost), or at the load's end if that is later
    return {
        "accepted": len(accepted),
        "delivered": len(delivered & set(accepted)),
        "lost": len(set(accepted) - delivered),
        "duplicates": len(arrivals) - len(delivered),
        "order violations": violations + sum(int(counts.get(name, 0))
                                             for name in ("orphans", "late_triggers")),
        "misrouted": int(counts.get("misrouted", 0)),
        "worst window": max(worst.values(), default=0),
        "over limit": sum(1 for n in worst.values() if n > limit),
        "no 202 (s)": round(longest_gap(accepted.values(), start, load_end), 1),
        "no delivery (s)": round(longest_gap(delivery, start, min(end, max(
            load_end, max(delivery, default=start)))), 1),
    }


def disorders(events: list[dict[str, Any]], start: float = 0.0) -> dict[str, list[str]]:
    """Each incident whose deliveries were out of order, with what arrived (action, the
    key's last 4 characters, seconds since ``start``), for the drill's log."""
    found: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event["status"] == 202 and event["kind"] == "alert":
            found[event["dedup_key"]].append(
                f"{event['event_action']}@{str(event['routing_key'])[-4:]}"
                f"+{event['at'] - start:.1f}s")
    return {incident: arrived for incident, arrived in found.items()
            if _collapsed(arrived) != list(ACTIONS)[: len(_collapsed(arrived))]}


def _collapsed(arrived: list[str]) -> list[str]:
    actions = [a.split("@")[0] for a in arrived]
    return [a for n, a in enumerate(actions) if n == 0 or actions[n - 1] != a]


def failed(row: dict[str, Any]) -> bool:
    """A scenario fails on a lost event, an order violation, a misrouted follow-up or a
    key over its limit (the time goals are reported, not failed on)."""
    return bool(row["lost"] or row["order violations"] or row["misrouted"]
                or row["over limit"])


def skipped() -> str:
    """Why the failover drill cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "it makes network namespaces, which needs root (run scripts/drill as root)"
    if shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        return "the ip command (iproute2) is missing: apt-get install -y iproute2"
    return ""


COLUMNS = ["relay's Redis URL", "host killed", "accepted", "delivered", "lost",
           "lost of the cut host's 202s", "duplicates", "order violations", "misrouted",
           "worst window", "limit", "no 202 (s)", "no delivery (s)",
           "rejoined as replica (s)", "client retries", "drained after load (s)"]


def publish_rows(mode: str, started: float, rows: list[dict[str, Any]],
                 write: bool) -> None:
    """The scenarios' table, through scripts/bench.py's ``publish`` (its own block in
    docs/BENCHMARKS.md with ``write``: ``drill:<mode> failover``)."""
    cells = [[f"{row['drill']}: {row['about']}",
              *(row.get(c, "-") for c in COLUMNS)] for row in rows]
    publish("drill", f"{mode} failover", started,
            "Three hosts made of network namespaces on a bridge, each with redis-server, a "
            "Sentinel (quorum 2, down after 1.5 s), an ingress node and a worker process "
            "for every key; two clients send 7 events/s to every host's ingress in turn "
            "(retrying 502, 503 and connection errors on the next host), over the 3 keys' "
            "limits; each scenario on a fresh set-up. Worst window: the most requests "
            "PagerDuty saw for one key in any window of the limit's length. Goals: lost 0, "
            "order violations 0, misrouted 0, never over the limit; 202 again within 10 s "
            "of the primary dying (no 202), delivery again within 15 s (no delivery).",
            ["Scenario", *COLUMNS], cells, write)
