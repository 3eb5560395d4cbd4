"""Housekeeping without processes (fakeredis): retention, the self-check's conditions and
alarms, and each period's job made once."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import fakeredis
import pytest
from rq import Queue

from relay.channels.notice import Entry
from relay.housekeeping import jobs, retention, selfcheck
from relay.keys import key_id
from relay.names import Names
from relay.routes.config import load
from relay.settings import Settings
from relay.store import Record, now_ms

NAMES = Names("pdr")


@pytest.fixture
def setup(tmp_path: Path, keys: tuple[str, ...], monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "keys.txt").write_text(f"{keys[0]} db\n{keys[1]} ops\n")
    (tmp_path / "routes.yml").write_text("""
channels:
  - {name: chat, type: slack, url: "https://hooks.example.org/x"}
  - {name: mail, type: email, host: smtp.example.org, sender: a@example.org,
     to: b@example.org, min_severity: critical}
self_alert:
  keys: [db, ops]
  channels: [chat, mail]
  oldest_queued_s: 60
  for_s: 0
""")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                                  "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml")})
    return settings, load(settings.routes_file, settings.key_names)


def beat(fake, settings: Settings, *names: str) -> None:
    """A live worker's heartbeat for each named key."""
    for name in names:
        kid = key_id(settings.routing_keys[settings.key_names.index(name)])
        fake.zadd(NAMES.workers(kid), {"w1": now_ms() + 10_000})


def dead_letter(fake, settings: Settings, dead_id: str, age_days: float,
                dedup_key: str = "x") -> None:
    kid = key_id(settings.routing_keys[0])
    raw = Record("alert", {"event_action": "trigger", "dedup_key": dedup_key}, 0).encode()
    fake.hset(NAMES.dead, dead_id, json.dumps({"id": dead_id, "key_id": kid, "raw": raw}))
    fake.zadd(NAMES.dead_index, {dead_id: now_ms() - age_days * 86_400_000})
    fake.hincrby(NAMES.stats(kid), "dead_letters", 1)


def test_retention_sweeps_old_dead_letters_and_idle_incidents(setup, fake) -> None:
    settings, _ = setup
    dead_letter(fake, settings, "old", 31)
    dead_letter(fake, settings, "new", 1)
    kid = key_id(settings.routing_keys[0])
    fake.zadd(NAMES.incidents(kid), {"idle": now_ms() - 8 * 86_400_000, "open": now_ms()})
    fake.zadd(NAMES.held, {"idle": 1})
    found = retention.sweep(fake, NAMES, settings, now_ms())
    assert found == {"dead_letters": 1, "incidents": 2, "story_steps": 0}
    assert fake.hkeys(NAMES.dead) == ["new"] and fake.zrange(NAMES.dead_index, 0, -1) == ["new"]
    assert fake.hget(NAMES.stats(kid), "dead_letters") == "1"
    assert fake.zrange(NAMES.incidents(kid), 0, -1) == ["open"]
    assert retention.sweep(fake, NAMES, settings, now_ms()) == {
        "dead_letters": 0, "incidents": 0, "story_steps": 0}


def ids(found: list[selfcheck.Condition]) -> list[str]:
    return sorted(c.id for c in found)


def test_the_self_check_names_each_condition(setup, fake) -> None:
    settings, routes = setup
    assert ids(selfcheck.conditions(fake, NAMES, settings, routes)) == [
        "no-worker:db", "no-worker:ops"]
    beat(fake, settings, "db", "ops")
    assert selfcheck.conditions(fake, NAMES, settings, routes) == []
    kid = key_id(settings.routing_keys[0])
    fake.hset(NAMES.stats(kid), "blocked", "HTTP 403: check the routing key")
    fake.rpush(NAMES.queue(kid), json.dumps({"t": now_ms() - 120_000, "k": "alert", "e": {}}))
    dead_letter(fake, settings, "alarm", 0, dedup_key=selfcheck.PREFIX + "stalled-db")
    assert ids(selfcheck.conditions(fake, NAMES, settings, routes)) == [
        "key-blocked:db", "stalled:db"]  # an alarm's own dead letter raises nothing
    dead_letter(fake, settings, "real", 0)
    assert "dead-letters" in ids(selfcheck.conditions(fake, NAMES, settings, routes))


def test_an_alarm_is_raised_once_never_on_its_own_key_and_resolved(setup, fake) -> None:
    settings, routes = setup
    beat(fake, settings, "ops")
    alarms = selfcheck.Alarms(fake, NAMES, settings, routes)
    found = selfcheck.conditions(fake, NAMES, settings, routes)
    assert alarms.check(found) == (["no-worker:db"], [])
    assert alarms.check(found) == ([], [])  # one open alarm per condition
    ops = NAMES.queue(key_id(settings.routing_keys[1]))
    db = NAMES.queue(key_id(settings.routing_keys[0]))
    assert fake.llen(db) == 0  # not on the key it is about
    [raw] = fake.lrange(ops, 0, -1)
    event = Record.decode(raw).event
    assert event["dedup_key"] == "pd-relay-self-no-worker-db"
    assert event["payload"]["severity"] == "critical"
    [notice] = [Entry.parse(e) for e in fake.lrange(NAMES.outbox, 0, -1)]
    assert notice.header["c"] == ["chat", "mail"] and notice.header["r"] == "self_alert"
    beat(fake, settings, "db")
    assert alarms.check(selfcheck.conditions(fake, NAMES, settings, routes)) == (
        [], ["no-worker:db"])
    resolve = Record.decode(fake.lrange(ops, 0, -1)[-1]).event
    assert resolve == {"event_action": "resolve", "dedup_key": "pd-relay-self-no-worker-db"}
    assert fake.hlen(NAMES.alarms) == 0


def test_a_condition_alarms_only_once_it_held_for_for_s(setup, fake) -> None:
    settings, routes = setup
    held = replace(routes, self_alert=replace(routes.self_alert, for_s=60))
    alarms = selfcheck.Alarms(fake, NAMES, settings, held)
    found = [selfcheck.Condition("no-worker:db", "no worker", "critical", key="db")]
    assert alarms.check(found, now=1000) == ([], [])  # pending
    assert alarms.check(found, now=1059) == ([], [])
    assert alarms.check([], now=1060) == ([], [])  # it cleared: pending no more
    assert alarms.check(found, now=1070) == ([], [])  # seen again: the wait starts over
    assert alarms.check(found, now=1130) == (["no-worker:db"], [])
    assert fake.hlen(NAMES.alarms_pending) == 0


def test_an_alarm_about_the_only_alarm_key_goes_to_the_channels_alone(setup, fake) -> None:
    settings, routes = setup
    only_db = replace(routes, self_alert=replace(routes.self_alert, keys=("db",)))
    beat(fake, settings, "ops")
    alarms = selfcheck.Alarms(fake, NAMES, settings, only_db)
    found = selfcheck.conditions(fake, NAMES, settings, only_db)
    alarms.check(found)
    assert fake.llen(NAMES.queue(key_id(settings.routing_keys[0]))) == 0
    [notice] = [Entry.parse(e) for e in fake.lrange(NAMES.outbox, 0, -1)]
    assert notice.slot == 0 and notice.header["c"] == ["chat", "mail"]
    warning = selfcheck.Condition("channel:chat", "chat fails", "warning", channel="chat")
    assert alarms.check([*found, warning]) == (["channel:chat"], [])
    # not to the channel it is about, and mail takes critical only: the key alone
    assert len(fake.lrange(NAMES.outbox, 0, -1)) == 1
    assert fake.llen(NAMES.queue(key_id(settings.routing_keys[0]))) == 1


def test_each_periods_job_is_made_once_however_many_schedulers() -> None:
    connection = fakeredis.FakeRedis()
    queue = Queue("pdr:housekeeping", connection=connection, serializer="json")
    settings = Settings(self_check_s=30, retention_s=3600)
    now = 1_000_000_000.0
    first, second = {}, {}
    assert jobs.due(queue, settings, first, now) == [f"self-check-{int(now // 30)}",
                                                     f"retention-{int(now // 3600)}"]
    assert jobs.due(queue, settings, second, now) == []  # another scheduler: refused
    assert jobs.due(queue, settings, first, now + 10) == []  # the same period
    assert jobs.due(queue, settings, first, now + 30) == [f"self-check-{int(now // 30) + 1}"]
    assert queue.count == 3 and time.time() > 0


def test_status_shows_the_open_alarms(setup, fake, monkeypatch, capsys) -> None:
    from relay.commands import operations

    settings, routes = setup
    monkeypatch.setattr(operations, "connect", lambda _settings: fake)
    selfcheck.Alarms(fake, NAMES, settings, routes).check(
        selfcheck.conditions(fake, NAMES, settings, routes), now=0)
    args = type("Args", (), {"json": False, "watch": 0})()
    assert operations.status(settings, args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ALARM")]
    assert [line.split()[1] for line in lines] == ["no-worker:db", "no-worker:ops"]
    args.json = True
    operations.status(settings, args)
    assert set(json.loads(capsys.readouterr().out)["alarms"]) == {"no-worker:db",
                                                                  "no-worker:ops"}


def test_an_alarm_goes_out_when_redis_is_full_shedding_history(setup, fake,
                                                                monkeypatch) -> None:
    """Promise 8: the relay's own alarms come before history (issue 23). Redis refuses
    the alarm's ENQUEUE for want of memory once: the history is shed, the alarm stored."""
    import redis

    from relay.store import EventStore

    settings, routes = setup
    beat(fake, settings, "ops")
    for _ in range(300):
        fake.xadd(NAMES.history, {"s": "accepted", "v": "x" * 50})
    real, refused = EventStore._command, []

    def full_once(self: EventStore, *command: object) -> object:
        if not refused and isinstance(command[0], bytes):
            refused.append(command)
            raise redis.exceptions.OutOfMemoryError(
                "OOM command not allowed when used memory > 'maxmemory'.")
        return real(self, *command)

    monkeypatch.setattr(EventStore, "_command", full_once)
    alarms = selfcheck.Alarms(fake, NAMES, settings, routes)
    assert alarms.check(selfcheck.conditions(fake, NAMES, settings, routes)) == (
        ["no-worker:db"], [])
    assert refused and fake.xlen(NAMES.history) < 300
    [raw] = fake.lrange(NAMES.queue(key_id(settings.routing_keys[1])), 0, -1)
    assert Record.decode(raw).event["dedup_key"] == "pd-relay-self-no-worker-db"
