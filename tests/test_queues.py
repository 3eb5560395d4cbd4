"""``pd-relay queue show|purge``: junk leaves a key's queue, the rest keeps its order,
the event in flight is never touched, and a dry run changes nothing."""

from __future__ import annotations

import logging
from dataclasses import replace

import fakeredis
import pytest

from relay import queues
from relay.cli import _parser
from relay.keys import key_id
from relay.names import Names
from relay.store import Record
from tests.conftest import trigger

NAMES = Names()


@pytest.fixture
def run(settings, fake, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(queues, "connect", lambda _settings: fake)

    def run(*argv: str) -> tuple[int, str, str]:
        code = queues.command(settings, _parser().parse_args(["queue", *argv]))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def fill(fake: fakeredis.FakeRedis, key: str) -> list[str]:
    """In flight: one info event; queued: junk (info) between real pages (critical)."""
    kid = key_id(key)
    fake.rpush(NAMES.inflight(kid), Record("alert", dict(
        trigger("flying", dedup_key="flying"), payload={
            "summary": "x", "source": "s", "severity": "info"}), 1).encode())
    order = []
    for n in range(30):
        junk = n % 3 != 0
        event = trigger(f"event {n}", dedup_key=f"{'junk' if junk else 'page'}-{n}")
        event["payload"]["severity"] = "info" if junk else "critical"  # type: ignore[index]
        fake.rpush(NAMES.queue(kid), Record("alert", event, 1000 + n).encode())
        order.append(str(event["dedup_key"]))
    fake.hset(NAMES.stats(kid), "bytes", sum(len(r.encode()) for r in
                                             fake.lrange(NAMES.queue(kid), 0, -1)))
    return order


def dedup_keys(fake: fakeredis.FakeRedis, name: str) -> list[str]:
    """The dedup_keys of the events in a list, past the gaps a purge leaves."""
    return [Record.decode(raw).event["dedup_key"] for raw in fake.lrange(name, 0, -1) if raw]


def test_purge_removes_only_matching_queued_events_and_keeps_the_order(
        run, fake, settings, caplog) -> None:
    key = settings.routing_keys[0]
    order = fill(fake, key)
    queue = NAMES.queue(key_id(key))

    code, out, _ = run("purge", "key-1", "--match", 'severity="info"')  # a dry run
    assert code == 0 and "would remove 20 queued event(s) of key key-1" in out
    assert dedup_keys(fake, queue) == order

    with caplog.at_level(logging.WARNING, logger="relay.queues"):
        code, out, _ = run("purge", key_id(key), "--match", 'severity="info"', "--yes")
    assert code == 0 and "removed 20 queued event(s) of key key-1" in out
    assert dedup_keys(fake, queue) == [k for k in order if k.startswith("page-")]
    assert dedup_keys(fake, NAMES.inflight(key_id(key))) == ["flying"]  # never in flight
    stats = fake.hgetall(NAMES.stats(key_id(key)))
    assert stats["purged"] == "20"
    assert int(stats["bytes"]) == sum(len(r.encode()) for r in fake.lrange(queue, 0, -1))
    assert "purged 20 queued event(s) of key key-1 matching severity=\"info\"" in caplog.text


def test_purge_needs_matchers_or_all_and_a_known_key(run, fake, settings) -> None:
    fill(fake, settings.routing_keys[0])
    assert run("purge", "key-1")[0] == 2
    assert run("purge", "no-such-key", "--all")[0] == 2
    assert run("purge", "key-1", "--match", "nonsense")[0] == 2
    code, out, _ = run("purge", "key-1", "--all", "--yes")
    assert code == 0 and "removed 30" in out
    assert dedup_keys(fake, NAMES.queue(key_id(settings.routing_keys[0]))) == []


def test_show_lists_matching_events_escaped(run, fake, settings) -> None:
    key = settings.routing_keys[1]
    event = trigger("forged\n2026 | ERROR | worker | x\x1b[8m", dedup_key="odd")
    fake.rpush(NAMES.queue(key_id(key)), Record("alert", event, 5).encode())
    code, out, _ = run("show", "key-2", "--match", 'dedup_key="odd"')
    assert code == 0 and "1 shown of 1 queued for key key-2" in out
    assert "\x1b" not in out and "forged\\n2026" in out



def test_purge_reaches_events_sorted_into_lanes_and_leaves_gaps(run, fake, settings) -> None:
    """Storm mode: the worker sorted part of the queue into lanes. The purge takes junk
    out of the lanes too, leaving gaps that keep the worker's places right; the worker
    then skips the gaps and its record of each junk incident ends empty."""
    from worker.lanes import Lanes

    key = settings.routing_keys[0]
    kid = key_id(key)
    order = fill(fake, key)
    fake.delete(NAMES.inflight(kid))
    lanes = Lanes(fake, NAMES, kid, settings, "key-1")
    lanes.take(take=False)  # all sorted: pages in the critical lane, junk in the info one
    fake.rpush(NAMES.queue(kid), Record("alert", trigger(dedup_key="junk-late"), 2000).encode())
    info = NAMES.lanes(kid)[3]
    assert fake.llen(info) == 20 and fake.hget(NAMES.stats(kid), "laned") == "30"

    code, out, _ = run("purge", "key-1", "--match", 'severity="info"', "--yes")
    assert code == 0 and "removed 20 queued event(s)" in out
    assert fake.llen(info) == 0  # gaps where they stood, and gaps at an end are taken off
    notes = [entry.split() for field, entry in fake.hgetall(NAMES.pending(kid)).items()
             if not field.startswith("#")]
    assert all(note[1] == "0" or note[0] == "0" for note in notes)  # junk: gone at once
    assert fake.hget(NAMES.stats(kid), "laned") == "10"
    assert dedup_keys(fake, NAMES.queue(kid)) == ["junk-late"]  # critical: kept
    sent = []
    while (raw := lanes.take()[1]) is not None:
        sent.append(Record.decode(raw).event["dedup_key"])
        fake.lpop(NAMES.inflight(kid))
    assert sent == [d for d in order if d.startswith("page")] + ["junk-late"]
    assert not any(entry.split()[1] != "0" for field, entry in
                   fake.hgetall(NAMES.pending(kid)).items() if not field.startswith("#"))
    assert fake.hget(NAMES.stats(kid), "laned") == "0"


def test_a_purged_change_event_with_a_dedup_key_leaves_its_incident_pinned(run, fake,
                                                                         settings) -> None:
    """Issue 24 (1): the sorter never counts a change event in an incident, but its purge
    gap was written as an alert's, so reaching it took one off the incident: with
    [change, trigger(info), resolve] waiting and the change purged, a new critical
    trigger went first, and PagerDuty saw trigger, trigger, resolve."""
    from worker.lanes import Lanes

    key = settings.routing_keys[0]
    kid = key_id(key)
    change = {"dedup_key": "x", "payload": {"summary": "deploy", "source": "ci"}}
    info = dict(trigger("x info", dedup_key="x"),
                payload={"summary": "x", "source": "s", "severity": "info"})
    for n, (kind, event) in enumerate([("change", change), ("alert", info),
                                       ("alert", {"event_action": "resolve", "dedup_key": "x"})]):
        fake.rpush(NAMES.queue(kid), Record(kind, event, 1000 + n).encode())
    lanes = Lanes(fake, NAMES, kid, settings, "key-1")
    lanes.take(take=False)
    code, out, _ = run("purge", "key-1", "--match", 'summary="deploy"', "--yes")
    assert code == 0 and "removed 1 queued event(s)" in out
    sent = []

    def take() -> bool:
        raw = lanes.take()[1]
        if raw is None:
            return False
        record = Record.decode(raw)
        sent.append(f"{record.event['event_action']}:{record.event['payload']['severity']}"
                    if "payload" in record.event else record.event["event_action"])
        fake.lpop(NAMES.inflight(kid))
        return True

    assert take()  # the gap, then the info trigger: the resolve still waits
    fake.rpush(NAMES.queue(kid), Record("alert", trigger("x again", dedup_key="x"),
                                        2000).encode())  # critical, re-opening it after
    while take():
        pass
    assert sent == ["trigger:info", "resolve", "trigger:critical"]


def test_after_its_info_trigger_is_purged_a_critical_trigger_goes_first(run, fake,
                                                                       settings) -> None:
    """Issue 24 (5): a purge left a gap the worker counted only when it reached it, so the
    incident stayed pinned to the info lane meanwhile: its next critical trigger waited
    behind every info event, neither merging nor moving up."""
    from worker.lanes import Lanes

    key = settings.routing_keys[0]
    kid = key_id(key)
    noise = [dict(trigger(f"noise {n}", dedup_key=f"noise-{n}"),
                  payload={"summary": "n", "source": "s", "severity": "info"})
             for n in range(3)]
    junk = dict(trigger("junk", dedup_key="x"),
                payload={"summary": "junk", "source": "s", "severity": "info"})
    for n, event in enumerate([*noise, junk]):
        fake.rpush(NAMES.queue(kid), Record("alert", event, 1000 + n).encode())
    lanes = Lanes(fake, NAMES, kid, settings, "key-1")
    lanes.take(take=False)
    code, out, _ = run("purge", "key-1", "--match", 'summary="junk"', "--yes")
    assert code == 0 and "removed 1 queued event(s)" in out
    fake.rpush(NAMES.queue(kid), Record("alert", trigger("x down", dedup_key="x"),
                                        2000).encode())  # critical
    raw = lanes.take()[1]
    assert raw is not None and Record.decode(raw).event["dedup_key"] == "x"


def test_each_purge_call_is_bounded_and_the_rest_keeps_its_order(run, fake, settings,
                                                                  monkeypatch) -> None:
    """Issue 24: a purge read and rewrote the whole list in each script call (a queue
    of 100,000 events, once per 10,000 purged, Redis held for the lot). Each call now
    gets at most PURGED_PER_CALL events, each with the place the read found it at, and
    looks there only; a worker taking meanwhile shifts nothing (places count what
    left)."""
    from worker.lanes import Lanes
    from worker.purge import PURGED_PER_CALL

    key = settings.routing_keys[0]
    kid = key_id(key)
    queue = NAMES.queue(kid)
    events = [Record("alert", trigger(f"e{n}", dedup_key=f"{'junk' if n % 2 else 'page'}-{n}"),
                     1000 + n).encode() for n in range(4 * PURGED_PER_CALL + 300)]
    fake.rpush(queue, *events)
    fake.hset(NAMES.stats(kid), "bytes", sum(len(raw) for raw in events))
    lanes = Lanes(fake, NAMES, kid, replace(settings, storm_mode="off"), "key-1")
    sizes: list[int] = []
    taken: list[str] = []
    original = fake.evalsha

    def spying(sha, numkeys, *keys_and_args):  # type: ignore[no-untyped-def]
        if sha not in (lanes.script.sha, lanes.prune_script.sha):
            sizes.append(len(keys_and_args) - int(numkeys))
            raw = lanes.take().raw  # the worker takes one meanwhile: the list shifts
            taken.append(Record.decode(raw).event["dedup_key"])
            fake.lpop(NAMES.inflight(kid))
        return original(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(fake, "evalsha", spying)
    code, out, _ = run("purge", "key-1", "--match", 'dedup_key=~"junk-.*"', "--yes")
    assert code == 0 and len(sizes) >= 3 and max(sizes) <= 2 * PURGED_PER_CALL + 2
    junk_taken = sum(1 for k in taken if k.startswith("junk"))
    assert f"removed {len(events) // 2 - junk_taken} queued event(s)" in out
    left = [Record.decode(raw).event["dedup_key"] for raw in fake.lrange(queue, 0, -1) if raw]
    pages = [Record.decode(raw).event["dedup_key"] for raw in events[::2]]
    assert left == [k for k in pages if k not in taken]
