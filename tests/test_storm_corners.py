"""Storm mode's corners a review of issue 24's changes found (bounded purges, aging, TAKE's
bounds, stored formats): each test failed before its fix (main at 6d114bd)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from relay import queues
from relay.cli import _parser
from relay.keyring import register
from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from relay.status import read_status
from relay.store import Record, now_ms
from worker.lanes import Lanes

NAMES = Names()


def alert(dedup_key: str, severity: str = "info") -> dict[str, Any]:
    return {"event_action": "trigger", "dedup_key": dedup_key,
            "payload": {"summary": dedup_key, "source": "h", "severity": severity}}


def arrive(fake: fakeredis.FakeRedis, kid: str, events: list[dict[str, Any]],
           at: int) -> None:
    for n, event in enumerate(events):
        raw = Record("alert", event, at + n, f"id{n}").encode()
        fake.rpush(NAMES.queue(kid), raw)
        fake.hincrby(NAMES.stats(kid), "bytes", len(raw))


def purge(settings: Settings, fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch,
          *argv: str) -> int:
    monkeypatch.setattr(queues, "connect", lambda _settings: fake)
    return queues.command(settings, _parser().parse_args(["queue", "purge", *argv]))


def test_status_sees_the_oldest_waiting_event_behind_a_purged_flood(
        settings, fake, monkeypatch, capsys) -> None:
    """A junk flood purged while the key's worker is down (the very case the stall alarm
    is for) leaves more than 64 gaps at the arrival list's head; the page behind them has
    waited 20 minutes, but status (and so the `stalled:` self-alert) reads age 0."""
    kid = key_id(settings.routing_keys[0])
    long_ago = now_ms() - 20 * 60_000
    arrive(fake, kid, [alert(f"junk-{n}") for n in range(100)] + [alert("page", "critical")],
           long_ago)
    assert purge(settings, fake, monkeypatch, "key-1", "--match", 'dedup_key=~"junk-.*"',
                 "--yes") == 0
    assert "removed 100" in capsys.readouterr().out
    row = read_status(fake, NAMES, settings)[0]
    assert row["queued"] == 1
    assert row["oldest_age_seconds"] >= 20 * 60 - 5, row["oldest_age_seconds"]


def test_status_by_severity_and_unsorted_count_events_not_purge_gaps(
        settings, fake, monkeypatch, capsys) -> None:
    """`queued_by_severity` ("Events sorted into each lane", also pd_relay_queued_by_severity)
    and `unsorted` count a purge's gaps as waiting events."""
    kid = key_id(settings.routing_keys[0])
    arrive(fake, kid, [alert(f"junk-{n}") for n in range(5)], 1000)
    lanes = Lanes(fake, NAMES, kid, replace(settings, storm_mode="always"), "key-1")
    lanes.take(take=False)  # the worker sorts them into the info lane
    arrive(fake, kid, [alert(f"junk-late-{n}") for n in range(3)], 2000)  # not sorted yet
    assert purge(settings, fake, monkeypatch, "key-1", "--all", "--yes") == 0
    assert "removed 8" in capsys.readouterr().out
    row = read_status(fake, NAMES, settings)[0]
    assert row["queued"] == 0
    assert row["queued_by_severity"]["info"] == 0, row["queued_by_severity"]
    assert row["unsorted"] == 0, row["unsorted"]


def test_a_removed_key_with_only_purge_gaps_left_does_not_stop_start_up(
        settings, fake, monkeypatch, capsys, tmp_path: Path) -> None:
    """A key whose queue was purged (--all) while its worker was stopped, then taken out of
    the keys file: nothing waits, yet start-up is refused ("has 4 queued")."""
    retired = settings.routing_keys[0]
    kid = key_id(retired)
    assert register(fake, NAMES, settings) == []
    arrive(fake, kid, [alert(f"junk-{n}") for n in range(4)], 1000)
    assert purge(settings, fake, monkeypatch, "key-1", "--all", "--yes") == 0
    assert "removed 4" in capsys.readouterr().out
    kept = settings.routing_keys[1:]
    path = tmp_path / "kept.txt"
    path.write_text("\n".join(kept) + "\n")
    left = register(fake, NAMES, replace(settings, routing_keys=kept, keys_file=path))
    assert [leftover.problem(path) for leftover in left] == []


@pytest.fixture
def real_redis(tmp_path: Path) -> Any:
    from relay.stack.processes import RedisServer

    logs = tmp_path / "logs"
    logs.mkdir()
    server = RedisServer(tmp_path, logs)
    server.start()
    yield server
    server.kill()


def test_a_take_from_the_lanes_runs_when_redis_is_full_with_storm_mode_off(
        settings, real_redis) -> None:
    """Storm mode switched off while lanes still hold a backlog (events waiting past
    RELAY_STORM_AGE_S in two lanes): Redis is full, and TAKE's first write is HINCRBY
    'turn' (aging), which Redis refuses at maxmemory. The worker can never take, so the
    full Redis never drains (docs/DESIGN.md "A full Redis": a worker's scripts write
    first with a command Redis never refuses)."""
    client = real_redis.client()
    kid = key_id(settings.routing_keys[0])
    padding = "x" * 2000
    events = []
    for n in range(40):
        event = alert(f"inc-{n}", "critical" if n % 2 else "info")
        event["payload"]["custom_details"] = {"padding": padding}
        events.append(event)
    for n, event in enumerate(events):
        client.rpush(NAMES.queue(kid), Record("alert", event, 1000 + n, f"id{n}").encode())
    sorting = Lanes(client, NAMES, kid, replace(settings, storm_mode="always"), "key-1")
    sorting.take(take=False)  # sorted into the critical and info lanes
    assert client.llen(NAMES.lanes(kid)[0]) == 20 and client.llen(NAMES.lanes(kid)[3]) == 20
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 4096)  # full
    off = Lanes(client, NAMES, kid, replace(settings, storm_mode="off", storm_age_s=1.0),
                "key-1")
    taken = off.take()  # raises redis.exceptions.OutOfMemoryError on main
    assert taken.raw is not None and taken.lane == 0


def test_the_rollback_mark_and_its_gap_strip_run_when_redis_is_full(
        settings, real_redis, monkeypatch, capsys) -> None:
    """`pd-relay format --rollback-to 1 --yes` with a full Redis (when something looks
    wrong, the moment an operator rolls back): LOWER's first write is SET, which Redis
    refuses at maxmemory, so the command fails before STRIP takes the purge's gaps out of
    the arrival lists, and v0.1.0 would then read each gap as an event."""
    from relay import cli, formats

    client = real_redis.client()
    monkeypatch.setattr("relay.commands.storeformat.connect", lambda *args: client)
    monkeypatch.setattr("relay.cli.configure", lambda *args: None)
    monkeypatch.setenv("RELAY_KEYS_FILE", str(settings.keys_file))
    monkeypatch.setenv("RELAY_REDIS_URL", real_redis.url)
    kid = key_id(settings.routing_keys[0])
    client.set(NAMES.format, formats.FORMAT)
    client.hset(NAMES.known_keys, kid, "key-1 ...")
    event = Record("alert", alert("x", "critical"), 1).encode()
    padding = Record("alert", dict(alert("pad"), payload={"summary": "p" * 3000}), 2).encode()
    client.rpush(NAMES.queue(kid), "", "", event, *[padding] * 40)
    client.hset(NAMES.stats(kid), "laned", -2)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 4096)  # full
    code = cli.main(["format", "--rollback-to", "1", "--yes"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert client.lrange(NAMES.queue(kid), 0, 2) == [event, padding, padding]


def test_after_a_purge_of_an_incidents_newest_trigger_its_critical_one_still_moves_up(
        settings, fake, monkeypatch, capsys) -> None:
    """Issue 24 (5) in another shape: an incident's two info triggers were sorted apart
    (backlog mode, before merging began); a purge takes the newer one. Its pending note
    still points at the purged one's gap, so its next trigger, critical now, can neither
    merge into the one left nor move up: it waits behind the whole info lane."""
    kid = key_id(settings.routing_keys[0])
    young = now_ms()
    t1 = alert("db")
    t2 = dict(alert("db"), payload={"summary": "db again", "source": "h", "severity": "info"})
    arrive(fake, kid, [t1, t2] + [alert(f"junk-{n}") for n in range(5)], young)
    calm = replace(settings, storm_mode="backlog", storm_after_s=10**6)
    Lanes(fake, NAMES, kid, calm, "key-1").take(take=False)  # sorted apart, not merged
    assert fake.llen(NAMES.lanes(kid)[3]) == 7
    assert purge(settings, fake, monkeypatch, "key-1", "--match", 'summary="db again"',
                 "--yes") == 0
    assert "removed 1" in capsys.readouterr().out
    arrive(fake, kid, [alert("db", "critical")], young + 100)
    storm = Lanes(fake, NAMES, kid, replace(calm, storm_after_s=0.001), "key-1")
    taken = []
    while (raw := storm.take().raw) is not None:  # merging on now: the backlog is old
        fake.lpop(NAMES.inflight(kid))
        record = Record.decode(raw)
        taken.append(f"{record.event['dedup_key']}:{record.event['payload']['severity']}")
    # expected: the critical trigger merged into the info one left and moved up, first
    assert taken[0] == "db:critical", taken


def v010_script(path: str, name: str) -> str:
    """A script as v0.1.0 ran it, read out of git: by its tag, else by its commit (CI's
    clone of main has the history but no tags)."""
    import re
    import subprocess

    root = Path(__file__).resolve().parent.parent
    for ref in ("v0.1.0", "d28dc03"):
        shown = subprocess.run(["git", "-C", str(root), "show", f"{ref}:{path}"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            source = shown.stdout
            break
    else:
        raise AssertionError(f"v0.1.0's {path} is not in this clone's git (git fetch --tags)")
    found = re.search(rf'^{name} = """(.*?)"""', source, re.S | re.M)
    assert found, f"no {name} in v0.1.0's {path}"
    return found.group(1).replace("\\\\", "\\")


def test_a_change_events_gap_v010_left_does_not_unpin_its_incident_after_the_upgrade(
        settings, fake) -> None:
    """Issue 24 (1) across the upgrade: v0.1.0's lane purge wrote a '~' gap for a change
    event carrying a dedup_key as if it were an alert (k = "alert", no event_action). This
    release reads that gap (`left`) and takes one off the incident, which never counted
    the change event: with [change, trigger(info), resolve] waiting, the count reaches 0
    while the resolve waits, and a new critical trigger of the incident goes first.
    PagerDuty sees trigger, trigger, resolve where the sender sent trigger, resolve,
    trigger (promise 3). (v0.1.0's gap is told apart: an alert's has an event_action.)"""
    kid = key_id(settings.routing_keys[0])
    lane3 = NAMES.lanes(kid)[3]
    change = Record("change", {"dedup_key": "db", "payload": {"summary": "deploy",
                                                             "source": "h"}}, 1000, "c")
    fake.rpush(NAMES.queue(kid), change.encode(),
               Record("alert", alert("db"), 1001, "t1").encode(),
               Record("alert", {"event_action": "resolve", "dedup_key": "db"}, 1002,
                      "r").encode())
    lanes = Lanes(fake, NAMES, kid, replace(settings, storm_mode="always"), "key-1")
    lanes.take(take=False)  # as v0.1.0 sorted them (same format): all in the info lane
    assert fake.llen(lane3) == 3
    v010_purge = fake.register_script(v010_script("relay/scripts.py", "PURGE"))
    assert v010_purge(keys=[lane3, NAMES.stats(kid)], args=["lane", change.encode()]) == 1
    assert fake.lindex(lane3, 0).startswith("~")  # v0.1.0's gap; then the upgrade

    taken = []

    def take() -> None:
        raw = lanes.take().raw
        assert raw is not None and fake.lpop(NAMES.inflight(kid)) == raw
        taken.append(Record.decode(raw).action)

    take()  # the info trigger
    fake.rpush(NAMES.queue(kid), Record("alert", alert("db", "critical"), 1003, "t2").encode())
    take()
    take()
    assert taken == ["trigger", "resolve", "trigger"], taken


def test_a_v010_worker_still_running_in_a_rolling_upgrade_never_takes_a_purge_gap(
        settings, fake, monkeypatch, capsys) -> None:
    """While nodes of both releases run, this release's `queue purge` leaves '' gaps in
    the arrival list; a v0.1.0 worker (RELAY_STORM_MODE=off) moved a gap at the head in
    flight as an event (v0.1.0 then dead-letters it as unreadable), and `laned`, which
    counted the gap -1 until this release's TAKE pops it, stayed -1 for good. A purge now
    takes the gaps at either end off at once. (A gap between two waiting events stays:
    the README says not to purge while both releases run.)"""
    kid = key_id(settings.routing_keys[0])
    arrive(fake, kid, [alert("junk"), alert("page", "critical")], 1000)
    assert purge(settings, fake, monkeypatch, "key-1", "--match", 'dedup_key="junk"',
                 "--yes") == 0
    v010_take = fake.register_script(v010_script("worker/lanes.py", "TAKE"))
    keys = [NAMES.queue(kid), NAMES.inflight(kid), *NAMES.lanes(kid), NAMES.pending(kid),
            NAMES.stats(kid), NAMES.history]
    _, raw, _ = v010_take(keys=keys, args=["off", 30_000, 500, 1, 0, "key-1"])
    assert raw and Record.decode(raw).event["dedup_key"] == "page", repr(raw)
