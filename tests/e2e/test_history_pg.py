"""End to end: every event's record in a real PostgreSQL, with real processes (redis-server,
ingress nodes, workers, the PagerDuty simulator, ``pd-relay history-exporter``): events
sent over HTTP are delivered and their stories land in PostgreSQL, step by step; a
``kill -9`` of the exporter in the middle of a burst leaves nothing written twice and
nothing missing; the API and ``trace`` read PostgreSQL for what was exported and the
stream for the rest, so a person sees no gap and no duplicate."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import redis

from relay.history.pg.lag import lag_ms
from relay.names import Names
from relay.stack.processes import wait_until
from tests.conftest import trigger

NAMES = Names()


def rows(dsn: str, sql: str, *args: Any) -> list[Any]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def exported(client: redis.Redis) -> bool:
    """Every history entry committed by an exporter (the export's lag is 0)."""
    return lag_ms(client, NAMES, 0) == 0


def pg_stack(make_stack: Any, dsn: str, **env: Any) -> Any:
    stack = make_stack(keys=2, RELAY_HISTORY_DSN=dsn, RELAY_UI_OPEN_VIEW="true", **env)
    stack.history_migrate()
    stack.start_simulator()
    stack.start_ingress()
    return stack


def test_events_sent_over_http_are_delivered_and_recorded_step_by_step(
        make_stack: Any, pg_dsn: str) -> None:
    stack = pg_stack(make_stack, pg_dsn)
    stack.start_workers(1, 1)
    stack.start_history_exporter()
    stack.sim_config(fail_rate=0.3, fail_status=502)  # some attempts fail and are retried
    for n in range(20):
        event = trigger(f"disk full on db{n}", dedup_key=f"disk-{n}",
                        routing_key=stack.keys[n % 2])
        event["payload"]["component"] = "disk"  # type: ignore[index]
        assert stack.post(event).status_code == 202
    batch = [{"event_action": "resolve", "dedup_key": f"disk-{n}",
              "routing_key": stack.keys[n % 2]} for n in range(10)]
    assert stack.post(batch).status_code == 202
    wait_until(lambda: len(stack.delivered()) == 30, 60, "30 events at PagerDuty")
    stack.sim_config(fail_rate=0.0)

    def recorded() -> list[Any]:
        found = rows(pg_dsn, "SELECT dedup_key, action, state, severity, summary, source, "
                     "component, key_name, client, payload FROM pd_relay.events "
                     "ORDER BY dedup_key, action DESC")
        return found if len(found) == 30 and all(r[2] == "delivered" for r in found) else []

    events = wait_until(recorded, 60, "30 delivered events in PostgreSQL")
    first = events[0]
    assert first[:9] == ("disk-0", "trigger", "delivered", "critical", "disk full on db0", "db1",
                         "disk", "key-1", "127.0.0.1")
    assert first[9]["e"]["payload"]["summary"] == "disk full on db0"  # Record.encode's
    resolves = [e for e in events if e[1] == "resolve"]
    assert len(resolves) == 10 and all(e[3] in (None, "") for e in resolves)
    steps = rows(pg_dsn, "SELECT e.dedup_key, e.action, s.step, s.key_name FROM pd_relay.steps s "
                 "JOIN pd_relay.events e ON e.id = s.event_id ORDER BY s.at, s.entry, s.n")
    stories: dict[tuple[str, str], list[str]] = {}
    for dedup_key, action, step, _key in steps:
        stories.setdefault((dedup_key, action), []).append(step)
    assert len(stories) == 30
    for story in stories.values():
        assert story[0] == "accepted" and story[-1] == "delivered", story
        assert story.count("accepted") == 1 and story.count("delivered") == 1, story
        assert set(story[1:-1]) <= {"attempt"}, story
    attempts = sum(story.count("attempt") for story in stories.values())
    failed = sum(1 for e in stack.sim_get("events")["events"] if e["status"] == 502)
    assert attempts == failed  # every refused attempt PagerDuty saw is in the record (the
    # one it took is the delivered step)
    everything = json.dumps(rows(pg_dsn, "SELECT e.*, s.* FROM pd_relay.events e "
                                 "JOIN pd_relay.steps s ON s.event_id = e.id"), default=str)
    for key in stack.keys:
        assert key not in everything, "a routing key stored in PostgreSQL"
    password = pg_dsn.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in stack.logs_text()


def test_an_exporter_killed_mid_burst_leaves_nothing_twice_and_nothing_missing(
        make_stack: Any, pg_dsn: str) -> None:
    stack = pg_stack(make_stack, pg_dsn, RELAY_LOG_LEVEL="WARNING")
    first = stack.start_history_exporter("--batch", "5")  # many small commits
    sent: list[str] = []
    stop = threading.Event()

    def burst() -> None:  # 100 requests of 30 events, over 5 s at least
        for b in range(100):
            stop.wait(0.05)
            events = [trigger(f"burst {b}/{n}", dedup_key=f"burst-{b}-{n}") for n in range(30)]
            reply = stack.session.post(stack.ingress_urls[0] + "/v2/enqueue",
                                       json=events, timeout=30)
            assert reply.status_code == 202, reply.text
            sent.extend(e["dedup_key"] for e in events)  # type: ignore[misc]

    sender = threading.Thread(target=burst, daemon=True)
    sender.start()
    count = "SELECT count(*) FROM pd_relay.events"
    client = stack.redis.client()

    def holding() -> bool:  # it committed a batch and holds the next one (read, not acked)
        try:
            pending = client.xpending(NAMES.history, NAMES.history_group)["pending"]
        except redis.ResponseError:  # no group yet
            return False
        return bool(pending) and rows(pg_dsn, count)[0][0] > 0

    wait_until(holding, 60, "the exporter to commit a batch and hold the next", every=0.01)
    first.kill()  # kill -9, in the middle of the burst (and, most runs, of a batch)
    assert sender.is_alive(), "the burst ended before the kill: make it longer"
    at_kill = rows(pg_dsn, count)[0][0]
    sender.join(120)
    assert len(sent) == 3_000
    assert at_kill < 3_000
    stack.start_history_exporter("--claim-idle-s", "1")  # takes over what the dead one held
    wait_until(lambda: exported(client) and rows(pg_dsn, count)[0][0] == 3_000, 120,
               "every event exported after the kill")
    keys = rows(pg_dsn, "SELECT dedup_key, count(*) FROM pd_relay.events GROUP BY 1")
    assert sorted(k for k, _ in keys) == sorted(sent) and {n for _, n in keys} == {1}
    accepted = rows(pg_dsn, "SELECT event_id, count(*) FROM pd_relay.steps "
                    "WHERE step = 'accepted' GROUP BY 1")
    assert len(accepted) == 3_000 and {n for _, n in accepted} == {1}
    assert rows(pg_dsn, "SELECT count(*) FROM pd_relay.events e WHERE NOT EXISTS (SELECT 1 "
                "FROM pd_relay.steps s WHERE s.event_id = e.id)") == [(0,)]
    assert int(client.hget(NAMES.history_export, "lost") or 0) == 0


def test_the_api_and_trace_read_postgresql_and_the_streams_tail(
        make_stack: Any, pg_dsn: str) -> None:
    stack = pg_stack(make_stack, pg_dsn)
    exporter = stack.start_history_exporter()
    client = stack.redis.client()
    for n in range(5):
        assert stack.post(trigger(f"old {n}", dedup_key="mixed")).status_code == 202
    wait_until(lambda: rows(pg_dsn, "SELECT count(*) FROM pd_relay.events") == [(5,)]
               and exported(client), 60, "the first five exported")
    exporter.terminate()
    client.xtrim(NAMES.history, maxlen=0)  # exported: now only PostgreSQL has them
    for n in range(5, 8):  # the tail: only the stream has these
        assert stack.post(trigger(f"new {n}", dedup_key="mixed")).status_code == 202
    assert rows(pg_dsn, "SELECT count(*) FROM pd_relay.events") == [(5,)]
    node = stack.ingress_urls[0]
    listed = stack.session.get(node + "/api/v1/events", params={"dedup_key": "mixed"},
                               timeout=10)
    assert listed.status_code == 200, listed.text
    found = listed.json()["events"]
    ids = [e["id"] for e in found]
    assert len(ids) == 8 == len(set(ids)), found  # no gap, no duplicate
    times = [e["accepted_at"] for e in found]
    assert times == sorted(times, reverse=True)  # newest first, the tail's on top
    one = stack.session.get(f"{node}/api/v1/events/{ids[-1]}", timeout=10)
    assert one.status_code == 200 and one.json()["dedup_key"] == "mixed"
    assert one.json()["steps"][0]["step"] == "accepted"
    traced = stack.cli("trace", "mixed", "--json")
    assert traced.returncode == 0, traced.stderr
    stories = json.loads(traced.stdout)
    assert [s["id"] for s in stories] == ids[::-1]  # oldest first
    # an event both in PostgreSQL and still in the stream (committed, not yet trimmed)
    stack.start_history_exporter()
    wait_until(lambda: exported(client) and rows(
        pg_dsn, "SELECT count(*) FROM pd_relay.events") == [(8,)], 60, "the tail exported")
    again = stack.session.get(node + "/api/v1/events", params={"dedup_key": "mixed"},
                              timeout=10).json()["events"]
    assert [e["id"] for e in again] == ids
