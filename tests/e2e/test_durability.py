"""End to end: crashes and restarts of workers and Redis lose nothing; 503, never a false 202."""

from __future__ import annotations

import time

import requests

from relay.stack.processes import wait_until
from tests.conftest import trigger


def test_a_worker_killed_mid_delivery_loses_nothing(make_stack) -> None:
    # a 5 s lease: sends of at most 1 + 2 s (the simulator's 20 s stall is cut short)
    stack = make_stack(keys=1, RELAY_LEASE_TTL_S="5", RELAY_CONNECT_TIMEOUT_S="1")
    stack.start_simulator()
    stack.sim_config(slow_rate=1.0, slow_s=20)  # the first send hangs mid-delivery
    stack.start_ingress()
    worker = stack.start_worker(0)
    assert stack.post([trigger("first", dedup_key="k1"), trigger("second", dedup_key="k2")]
                      ).status_code == 202
    wait_until(lambda: stack.sim_get("events")["events"], 15, "the first send to start")
    worker.kill()  # SIGKILL while the request is in flight
    stack.sim_config(slow_rate=0.0)
    rows = stack.status()
    assert rows[0]["in_flight"] == 1 and rows[0]["queued"] == 1
    restarted = time.monotonic()
    stack.start_worker(0)
    # the hung send was recorded once; the redelivery records k1 again, before k2
    wait_until(lambda: [e["dedup_key"] for e in stack.delivered()] == ["k1", "k1", "k2"],
               15, "k1 to be sent again, then k2")
    took = time.monotonic() - restarted
    assert took <= 10, f"in-flight event redelivered {took:.1f}s after restart"


def test_sigterm_stops_a_worker_within_5s_and_keeps_its_event(make_stack) -> None:
    stack = make_stack(keys=1, RELAY_LEASE_TTL_S="4", RELAY_CONNECT_TIMEOUT_S="1")
    stack.start_simulator()
    stack.sim_config(slow_rate=1.0, slow_s=20)
    stack.start_ingress()
    worker = stack.start_worker(0)
    assert stack.post(trigger(dedup_key="t1")).status_code == 202
    wait_until(lambda: stack.sim_get("events")["events"], 15, "the send to start")
    took = worker.terminate()
    assert took < 5, f"worker took {took:.1f}s to stop"
    assert worker.popen.returncode == 0
    assert stack.status()[0]["in_flight"] == 1
    stack.sim_config(slow_rate=0.0)
    stack.start_worker(0)
    wait_until(lambda: stack.status()[0]["delivered"] == 1, 15, "delivery after restart")
    idle = stack.start_worker(0)
    time.sleep(1.5)
    assert idle.terminate() < 5  # an idle worker (blocked in BLMOVE) stops promptly too


def test_sigterm_stops_an_ingress_node_cleanly_with_its_log_lines_written(make_stack) -> None:
    stack = make_stack(keys=1)
    stack.start_ingress()
    node = stack.processes[-1]
    assert stack.post(trigger(dedup_key="last-words")).status_code == 202
    took = node.terminate()  # at once: INFO lines are batched for up to 0.5 s
    assert took < 5 and node.popen.returncode == 0
    text = node.log.read_text()
    assert "accepted trigger dedup_key=last-words" in text
    assert "SIGTERM received, stopping" in text and "ingress stopped" in text


def test_redis_killed_with_a_backlog_restarts_from_its_aof_with_nothing_lost(make_stack) -> None:
    stack = make_stack(keys=2)
    stack.start_simulator()
    stack.start_ingress()
    events = [trigger(f"e{n}", dedup_key=f"aof-{n}") for n in range(60)]
    for start in range(0, 60, 6):
        assert stack.post(events[start:start + 6]).status_code == 202
    stack.redis.kill()  # SIGKILL, right after the last 202
    stack.redis.start()
    stack.start_worker(0)
    stack.start_worker(1)
    wait_until(lambda: len(stack.delivered()) >= 60, 30, "the backlog after the restart")
    assert {e["dedup_key"] for e in stack.delivered()} == {e["dedup_key"] for e in events}


def test_redis_down_answers_503_and_never_202(make_stack) -> None:
    stack = make_stack(keys=1, RELAY_ADMIN_ALLOW="127.0.0.1")  # may read /readyz
    stack.start_simulator()
    url = stack.start_ingress()
    assert stack.post(trigger()).status_code == 202
    stack.redis.kill()
    for body in (trigger(), [trigger(), trigger()]):
        reply = stack.post(body)
        assert reply.status_code == 503, reply.text
        assert int(reply.headers["Retry-After"]) > 0
        assert reply.json()["status"] == "unavailable"
    assert requests.get(url + "/readyz", timeout=5).status_code == 503
    stack.redis.start()
    wait_until(lambda: stack.post(trigger()).status_code == 202, 15, "ingress to recover")
    assert requests.get(url + "/readyz", timeout=5).status_code == 200


def test_redis_full_answers_503_and_every_202_is_stored(make_stack) -> None:
    stack = make_stack(keys=1)
    stack.start_simulator()
    stack.start_ingress()
    client = stack.redis.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 300_000)
    accepted = refused = 0
    big = "x" * 1000
    for n in range(1000):
        reply = stack.post([trigger(f"{n} {big}") for _ in range(5)])
        if reply.status_code == 202:
            accepted += 5
        else:
            assert reply.status_code == 503, reply.text
            assert "Retry-After" in reply.headers
            refused += 1
            if refused >= 5:
                break
    assert refused >= 5 and accepted > 0
    assert stack.status()[0]["queued"] == accepted
