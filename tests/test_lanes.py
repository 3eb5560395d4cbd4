"""Storm mode (worker/lanes.py) on fakeredis[lua]: the order events leave a key in, and
how repeats are merged."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from relay.store import Record, now_ms
from worker.lanes import Lanes, outgoing

NAMES = Names()
OLD = 1_000  # accepted long ago: a backlog old enough for merges in backlog mode


def event(incident: str, action: str = "trigger", severity: str = "info",
          n: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {"event_action": action, "dedup_key": incident}
    if action == "trigger":
        found["payload"] = {"summary": f"{incident} #{n}", "source": "h", "severity": severity,
                            "custom_details": {"n": n}}
    return found


class Key:
    """One key's arrival list and lanes, taken from as its worker does."""

    def __init__(self, settings: Settings, mode: str = "always", after_s: float = 30,
                 age_s: float = 10**11) -> None:  # (events accepted at OLD never age here)
        self.fake = fakeredis.FakeRedis(decode_responses=True)
        self.settings = replace(settings, storm_mode=mode, storm_after_s=after_s,
                                storm_age_s=age_s)
        self.kid = key_id(settings.routing_keys[0])
        self.lanes = Lanes(self.fake, NAMES, self.kid, self.settings, "key-1")
        self.count = 0

    def arrive(self, *events: dict[str, Any], at: int = OLD) -> None:
        for found in events:
            raw = Record("alert", found, at + self.count, f"id{self.count}").encode()
            self.fake.rpush(NAMES.queue(self.kid), raw)
            self.fake.hincrby(NAMES.stats(self.kid), "bytes", len(raw))
            self.count += 1

    def take(self) -> Record | None:
        """The next event, delivered at once (as FINISH does: in flight no more)."""
        raw = self.lanes.take().raw
        if raw is None:
            return None
        assert self.fake.lpop(NAMES.inflight(self.kid)) == raw
        self.fake.hincrby(NAMES.stats(self.kid), "bytes", -len(raw))
        return Record.decode(raw)

    def drain(self) -> list[Record]:
        taken = []
        while (record := self.take()) is not None:
            taken.append(record)
        return taken

    def stat(self, name: str) -> int:
        return int(self.fake.hget(NAMES.stats(self.kid), name) or 0)


def prune(lanes: Lanes, before_ms: int) -> int:
    """A whole prune pass at once, slice after slice (the worker spreads one over its
    steps: worker/delivery.py ``_prune``)."""
    since, cursor, gone = lanes.prune_since(before_ms), 0, 0
    while True:
        cursor, forgotten = lanes.prune_slice(cursor, since)
        gone += forgotten
        if cursor == 0:
            return gone


def labels(records: list[Record]) -> list[str]:
    return [f"{r.event['dedup_key']}:{r.action}" for r in records]


def test_a_critical_trigger_overtakes_a_backlog_of_lesser_ones(settings) -> None:
    key = Key(settings)
    key.arrive(*[event(f"flap{n}", severity="warning" if n % 2 else "info") for n in range(6)],
               event("db", severity="critical"), event("api", severity="error"))
    assert labels(key.drain()) == [
        "db:trigger", "api:trigger", "flap1:trigger", "flap3:trigger", "flap5:trigger",
        "flap0:trigger", "flap2:trigger", "flap4:trigger"]


def test_storm_mode_off_keeps_arrival_order(settings) -> None:
    key = Key(settings, mode="off")
    key.arrive(event("a"), event("a"), event("b", severity="critical"))
    taken = key.drain()
    assert labels(taken) == ["a:trigger", "a:trigger", "b:trigger"]
    assert [r.repeats for r in taken] == [1, 1, 1] and key.stat("coalesced") == 0


def test_an_incident_keeps_its_order_and_its_resolve_its_triggers_priority(settings) -> None:
    """The incident's events stay in the lane its first waiting event chose; a resolve
    arriving once its trigger left goes with the trigger's severity, before the noise."""
    key = Key(settings, mode="off")  # no merging here: every event is seen
    key.settings = replace(key.settings, storm_mode="backlog", storm_after_s=10**9)
    key.lanes.settings = key.settings
    key.arrive(event("noise1"), event("db", severity="critical"), event("noise2"))
    assert labels([key.take()]) == ["db:trigger"]  # type: ignore[list-item]
    key.arrive(event("db", "acknowledge"), event("db", "resolve"))
    assert labels(key.drain()) == ["db:acknowledge", "db:resolve", "noise1:trigger",
                                   "noise2:trigger"]


def test_a_resolve_of_an_unknown_incident_goes_at_error_priority(settings) -> None:
    key = Key(settings)
    key.arrive(event("w", severity="warning"), event("gone", "resolve"),
               event("e", severity="error"))
    assert labels(key.drain()) == ["gone:resolve", "e:trigger", "w:trigger"]


def test_waiting_repeats_merge_into_the_newest_with_their_count(settings) -> None:
    key = Key(settings)
    key.arrive(event("flap", n=1), event("other"), event("flap", n=2), event("flap", n=3))
    first, other = key.drain()
    assert labels([first, other]) == ["flap:trigger", "other:trigger"]
    assert first.event["payload"]["custom_details"] == {"n": 3}
    assert (first.repeats, first.first_ms, first.accepted_ms, first.id) == (3, OLD, OLD + 3, "id3")
    sent = outgoing(first)["payload"]["custom_details"]
    assert sent["n"] == 3 and sent["pd_relay"]["coalesced"] == 3
    assert sent["pd_relay"]["first"] == "1970-01-01T00:00:01.000Z"
    assert key.stat("coalesced") == 2
    assert key.stat("bytes") == 0 and key.stat("laned") == 0
    steps = [json.loads(entry["x"]) for _, entry in key.fake.xrange(NAMES.history)]
    assert [(s["i"], s["into"]) for s in steps] == [("id0", "id2"), ("id2", "id3")]


def test_no_merge_across_an_acknowledge_or_resolve(settings) -> None:
    key = Key(settings)
    key.arrive(event("x", n=1), event("x", "acknowledge"), event("x", n=2), event("x", n=3),
               event("x", "resolve"), event("x", n=4))
    taken = key.drain()
    assert labels(taken) == ["x:trigger", "x:acknowledge", "x:trigger", "x:resolve",
                             "x:trigger"]
    assert [r.repeats for r in taken] == [1, 1, 2, 1, 1]


def test_backlog_mode_merges_only_once_the_oldest_waits_long_enough(settings) -> None:
    young = Key(settings, mode="backlog", after_s=30)
    young.arrive(event("x", n=1), event("x", n=2), at=now_ms())
    assert [r.repeats for r in young.drain()] == [1, 1]
    old = Key(settings, mode="backlog", after_s=30)
    old.arrive(event("x", n=1), event("x", n=2), at=now_ms() - 31_000)
    assert [r.repeats for r in old.drain()] == [2]


def test_a_repeat_that_grew_more_severe_moves_up_when_alone(settings) -> None:
    key = Key(settings)
    key.arrive(event("a"), event("x"), event("b"))
    key.lanes.take(take=False)
    key.arrive(event("x", severity="critical", n=9))
    taken = key.drain()
    assert labels(taken) == ["x:trigger", "a:trigger", "b:trigger"]
    assert taken[0].repeats == 2 and taken[0].event["payload"]["severity"] == "critical"
    assert key.stat("bytes") == 0 and key.stat("laned") == 0


def test_a_change_event_or_an_unreadable_one_waits_in_the_info_lane(settings) -> None:
    key = Key(settings)
    key.fake.rpush(NAMES.queue(key.kid), "not json",
                   Record("change", {"payload": {"summary": "deploy"}}, OLD).encode())
    key.arrive(event("db", severity="critical"))
    raw = key.lanes.take().raw
    assert raw is not None and Record.decode(raw).event["dedup_key"] == "db"
    assert key.fake.lrange(NAMES.lanes(key.kid)[3], 0, -1)[0] == "not json"
    assert key.fake.lpop(NAMES.inflight(key.kid)) == raw
    assert [key.lanes.take()[1] for _ in range(2)][0] == "not json"  # sent, dead-lettered


def test_a_big_arrival_is_sorted_in_slices(settings) -> None:
    from worker.lanes import SORTED_PER_CALL

    key = Key(settings)
    key.arrive(*[event(f"i{n}") for n in range(6 * SORTED_PER_CALL)],
               event("db", severity="critical"))
    unsorted, raw, _ = key.lanes.take(take=False)
    assert (unsorted, raw) == (5 * SORTED_PER_CALL + 1, None)
    assert key.fake.llen(NAMES.lanes(key.kid)[3]) == SORTED_PER_CALL
    while unsorted > SORTED_PER_CALL:  # as the worker does
        unsorted = key.lanes.take(take=False).unsorted
    assert labels([key.take()]) == ["db:trigger"]  # type: ignore[list-item]


def test_a_call_sorts_a_bounded_number_of_bytes(settings) -> None:
    """Issue 24: Redis's longest script call in the storm bench was a TAKE of 22.9 ms
    (500 events sorted, each decoded, merges decoding the repeat too). A call stops
    sorting once it decoded SORTED_BYTES_PER_CALL bytes (after one event at least)."""
    from worker.lanes import SORTED_BYTES_PER_CALL

    key = Key(settings)
    big = [dict(event(f"b{n}"), payload=dict(event("x")["payload"], custom_details={
        "blob": "x" * (SORTED_BYTES_PER_CALL // 3)})) for n in range(7)]
    key.arrive(*big)
    counts = []
    while (unsorted := key.lanes.take(take=False).unsorted) and len(counts) < 10:
        counts.append(unsorted)
    assert counts == [4, 1] and unsorted == 0  # three a call
    assert labels(key.drain()) == [f"b{n}:trigger" for n in range(7)]


# Each incident's events, in the order accepted: triggers, acknowledges and resolves at
# random severities, arriving in random slices between takes.
ACTIONS = st.sampled_from(["trigger", "trigger", "trigger", "acknowledge", "resolve"])
STEPS = st.lists(st.one_of(
    st.tuples(st.integers(0, 4), ACTIONS, st.sampled_from(["critical", "error", "warning",
                                                          "info"])),
    st.just("take")), max_size=60)


@hypothesis_settings(max_examples=150, deadline=None,  # settings: frozen, read only
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, mode=st.sampled_from(["off", "always"]))
def test_every_event_leaves_once_in_its_incidents_order(settings, steps, mode) -> None:
    """Whatever arrives and whenever the worker takes: each incident's events leave in
    the order accepted, each exactly once or merged into the next trigger of its incident
    with no acknowledge or resolve between; the byte and event counts end at zero."""
    key = Key(settings, mode=mode)
    accepted: dict[str, list[tuple[int, str]]] = {}
    taken: list[Record] = []
    for step in steps + ["drain"]:
        if step == "take":
            record = key.take()
            taken += [record] if record else []
        elif step == "drain":
            taken += key.drain()
        else:
            incident, action, severity = step
            accepted.setdefault(f"i{incident}", []).append((key.count, action))
            key.arrive(event(f"i{incident}", action, severity))
    for incident, events in accepted.items():
        sent = [(int(r.id[2:]), r.repeats) for r in taken if r.event["dedup_key"] == incident]
        covered: list[int] = []
        for number, repeats in sent:
            at = [n for n, _ in events].index(number)
            merged = events[at - repeats + 1: at + 1]
            assert len(merged) == repeats
            assert all(action == "trigger" for _, action in merged) or repeats == 1
            covered += [n for n, _ in merged]
        assert covered == [n for n, _ in events]  # in order, each once
    if mode == "off":
        assert all(r.repeats == 1 for r in taken)
    assert key.stat("bytes") == 0 and key.stat("laned") == 0
    assert not any(key.fake.llen(name) for name in NAMES.waiting(key.kid))


@pytest.mark.parametrize("details, expected", [
    (None, {}), ("text", {"details": "text"}), ({"a": 1}, {"a": 1})])
def test_merged_details_keep_what_the_event_had(details, expected) -> None:
    payload: dict[str, Any] = {"summary": "s", "source": "h", "severity": "info"}
    if details is not None:
        payload["custom_details"] = details
    record = Record("alert", {"event_action": "trigger", "dedup_key": "d", "payload": payload},
                    2000, "i", repeats=4, first_ms=1000)
    sent = outgoing(record)["payload"]["custom_details"]
    assert {k: v for k, v in sent.items() if k != "pd_relay"} == expected
    assert sent["pd_relay"] == {"coalesced": 4, "first": "1970-01-01T00:00:01.000Z",
                                "last": "1970-01-01T00:00:02.000Z"}
    assert record.event["payload"] == payload  # the stored event is left as it was


def test_idle_incidents_are_forgotten_but_not_those_with_events_waiting(settings) -> None:
    key = Key(settings)
    key.arrive(event("done", severity="critical"), event("waits"))
    assert labels([key.take()]) == ["done:trigger"]  # type: ignore[list-item]
    pending = NAMES.pending(key.kid)
    assert prune(key.lanes, now_ms() - 60_000) == 0  # both were seen just now
    assert prune(key.lanes, now_ms() + 1) == 1  # "done" has nothing waiting: forgotten
    assert [entry.split()[1] for field, entry in key.fake.hgetall(pending).items()
            if not field.startswith("#")] == ["1"]
    assert labels(key.drain()) == ["waits:trigger"]


def test_idle_incidents_past_the_cap_are_forgotten_however_recent(settings) -> None:
    """Promise 8 (issue 23's review): each delivered incident left an entry until a
    resolve or RELAY_INCIDENT_TTL_S (7 days), about 1.2 million a week per key at
    PagerDuty's pace. Past RELAY_INCIDENTS_MAX, a prune forgets every idle one."""
    key = Key(replace(settings, incidents_max=20))
    key.arrive(*[event(f"i{n}") for n in range(60)], event("waits"))
    for _ in range(60):
        key.take()
    pending = NAMES.pending(key.kid)
    incidents = [f for f in key.fake.hkeys(pending) if not f.startswith("#")]
    assert len(incidents) == 61
    assert prune(key.lanes, now_ms() - 60_000) == 60  # all seen just now, but over the cap
    assert [entry.split()[1] for field, entry in key.fake.hgetall(pending).items()
            if not field.startswith("#")] == ["1"]  # what waits keeps its entry
    assert labels(key.drain()) == ["waits:trigger"]


def test_status_and_metrics_show_the_storm(settings) -> None:
    from relay.metrics import Metrics
    from relay.status import format_table, read_status

    key = Key(settings)
    key.arrive(event("db", severity="critical"), event("flap", n=1), event("flap", n=2),
               event("w", severity="warning"))
    key.lanes.take(take=False)
    key.arrive(event("late"))  # not sorted yet
    row = read_status(key.fake, NAMES, key.settings)[0]
    assert row["queued"] == 4 and row["unsorted"] == 1 and row["coalesced"] == 1
    assert row["queued_by_severity"] == {"critical": 1, "error": 0, "warning": 1, "info": 1}
    assert row["oldest_critical_age_seconds"] > 10**9  # accepted at 1 s after the epoch
    assert "C/E/W/I" in format_table([row]) and "1/0/1/1" in format_table([row])
    text = Metrics(key.fake, NAMES, key.settings).render()[0].decode()
    assert 'pd_relay_queued_by_severity{key="key-1",severity="critical"} 1.0' in text
    assert 'pd_relay_coalesced_total{key="key-1"} 1.0' in text


def test_status_sees_the_oldest_waiting_event_past_gaps(settings) -> None:
    """Issue 24 (4): status read each lane's head only; a gap there (a purge, a merged
    trigger that moved up) read as empty, so the stall alarms saw age 0 while events
    waited."""
    from relay.status import read_status

    key = Key(settings)
    key.arrive(event("a"), event("b"))  # info, accepted long ago
    key.lanes.take(take=False)
    info = NAMES.lanes(key.kid)[3]
    key.fake.lset(info, 0, "")  # a gap where "a" was
    row = read_status(key.fake, NAMES, key.settings)[0]
    assert row["oldest_age_seconds"] > 10**9  # "b", accepted 1 s after the epoch


@pytest.mark.parametrize("details", [None, {"a": 1}])
def test_an_admitted_trigger_merged_never_outgrows_pagerdutys_limit(client, settings,
                                                                    details) -> None:
    """Issue 24 (3): the ingress admitted events up to the limit less the routing key, and
    a merged trigger gained its `pd_relay` details when sent: 512,059 bytes, a 400, and
    every repeat dead-lettered. The largest trigger the ingress takes, merged as often as
    a count can say, still fits."""
    from relay.store import MERGE_ROOM
    from worker.pagerduty import encode_body

    limit = settings.max_body_bytes
    payload: dict[str, Any] = {"summary": "s", "source": "h", "severity": "info"}
    if details is not None:
        payload["custom_details"] = details
    event: dict[str, Any] = {"event_action": "trigger", "dedup_key": "big", "payload": payload,
                             "images": [{"src": "https://x/" + "a" * (limit - 400)}]}
    low, high = limit - 1000, limit  # the largest an admitted event may be: bisected
    while high - low > 1:
        middle = (low + high) // 2
        event["images"][0]["src"] = "https://x/" + "a" * middle
        accepted = client.post("/v2/enqueue", json=event).status_code == 202
        low, high = (middle, high) if accepted else (low, middle)
    taken = dict(event, images=[{"src": "https://x/" + "a" * low}])
    assert client.post("/v2/enqueue", json=taken).status_code == 202
    merged = Record("alert", taken, 253_402_300_799_000, "i", repeats=10**15,
                    first_ms=253_402_300_798_000)  # the widest times and count
    body = encode_body(outgoing(merged), settings.routing_keys[0])
    assert len(body) <= limit, len(body)
    assert len(body) - len(encode_body(taken, settings.routing_keys[0])) <= MERGE_ROOM


def test_a_gap_the_previous_release_left_still_counts_its_event_gone(settings) -> None:
    """Upgrade (promise 9): the previous release's purge left '~' gaps naming the event's
    incident, counted gone when the worker reached them; this release's purge counts at
    once and leaves plain gaps, and still reads the old ones."""
    key = Key(settings)
    key.arrive(event("x"), event("x", "resolve"))
    key.lanes.take(take=False)
    info = NAMES.lanes(key.kid)[3]
    key.fake.lset(info, 0, '~{"k":"alert","e":{"dedup_key":"x","event_action":"trigger"}}')
    key.fake.hincrby(NAMES.stats(key.kid), "laned", -1)
    assert labels(key.drain()) == ["x:resolve"]
    assert [f for f in key.fake.hkeys(NAMES.pending(key.kid)) if not f.startswith("#")] == []


def test_a_take_skips_a_bounded_number_of_gaps_a_call(settings) -> None:
    """Issue 24: one TAKE popping 100,000 purge gaps held Redis for 0.75 s. A call skips at
    most GAPS_PER_CALL gaps and says there are more (lane -2); the worker calls again."""
    from worker.lanes import GAPS_PER_CALL, MORE_GAPS

    key = Key(settings)
    info = NAMES.lanes(key.kid)[3]
    key.arrive(event("after"))
    key.lanes.take(take=False)
    key.fake.lpush(info, *([""] * (GAPS_PER_CALL * 2 + 5)))
    calls = [key.lanes.take() for _ in range(3)]
    assert [taken.lane for taken in calls] == [MORE_GAPS, MORE_GAPS, 3]
    assert calls[2].raw is not None and Record.decode(calls[2].raw).event["dedup_key"] == "after"


def test_the_worker_takes_past_many_gaps(settings, fake) -> None:
    from tests.test_worker import ScriptedPagerDuty, drain, make_worker, queue
    from worker.lanes import GAPS_PER_CALL

    key = settings.routing_keys[0]
    kid = key_id(key)
    queue(fake, key, event("x"))
    worker = make_worker(settings, fake, ScriptedPagerDuty())
    worker.lanes.take(take=False)
    fake.lpush(NAMES.lanes(kid)[3], *([""] * (GAPS_PER_CALL * 3)))
    pd = worker.pagerduty
    drain(worker)
    assert [body["dedup_key"] for _, body in pd.sent] == ["x"]  # type: ignore[attr-defined]


def test_an_event_waiting_past_the_age_bound_gets_a_share_of_the_sends(settings) -> None:
    """Issue 24: the info lane could starve for as long as more urgent events kept
    coming. Once a lower lane's head has waited RELAY_STORM_AGE_S, every AGED_SHARE-th
    take serves the oldest such head; fresher lesser events still wait."""
    from worker.lanes import AGED_SHARE

    key = Key(settings, age_s=60)
    key.arrive(event("old1"), event("old2", severity="warning"), at=now_ms() - 120_000)
    key.arrive(event("new-info"), at=now_ms())
    key.arrive(*[event(f"c{n}", severity="critical") for n in range(2 * AGED_SHARE)],
               at=now_ms())
    taken = labels(key.drain())
    first_old = AGED_SHARE - 1  # the takes before the first aged one go by severity
    assert taken[first_old] == "old1:trigger"  # the oldest aged head (info) first
    assert taken[2 * first_old + 1] == "old2:trigger"
    assert [t for t in taken if t.startswith("c")] == [f"c{n}:trigger"
                                                        for n in range(2 * AGED_SHARE)]
    assert taken[-1] == "new-info:trigger"  # not aged: behind every critical
    assert key.stat("aged") == 2
    from relay.metrics import Metrics
    text = Metrics(key.fake, NAMES, key.settings).render()[0].decode()
    assert 'pd_relay_aged_total{key="key-1"} 2.0' in text


def test_the_worker_prunes_in_slices_between_steps(settings, fake) -> None:
    """Issue 24: the hourly prune scanned the whole pending hash (up to
    RELAY_INCIDENTS_MAX entries and more) in one go inside the delivery loop. Each call
    now looks at one slice of at most PRUNED_PER_CALL fields; the pass goes on at the
    next call."""
    from tests.test_worker import ScriptedPagerDuty, make_worker
    from worker.lanes import PRUNED_PER_CALL

    worker = make_worker(settings, fake, ScriptedPagerDuty())
    pending = NAMES.pending(worker.kid)
    idle = 2 * PRUNED_PER_CALL + 500
    fake.hset(pending, mapping={f"{n:016x}": "- 0 - - 3 1000" for n in range(idle)})
    fake.hset(pending, "busy", "3 1 7 t 3 1000")  # an event of it waits: kept
    left = [fake.hlen(pending)]
    while len(left) < 10 and left[-1] > 1:
        worker._prune()
        left.append(fake.hlen(pending))
    steps = [before - after for before, after in zip(left, left[1:], strict=False)]
    assert left[-1] == 1 and fake.hexists(pending, "busy")
    assert len(steps) >= 3 and max(steps) <= PRUNED_PER_CALL
    worker._prune()  # the pass is over: the next waits RELAY_RETENTION_S
    fake.hset(pending, "late", "- 0 - - 3 1000")
    worker._prune()
    assert fake.hexists(pending, "late")
