"""End to end: the relay's own alarms and its retention, with real ingress, workers, the
channel worker (RQ), Redis and the simulator."""

from __future__ import annotations

from pathlib import Path

from relay.stack.processes import wait_until
from tests.conftest import trigger
from tests.receivers import WebhookReceiver


def test_a_stopped_worker_raises_an_alarm_that_resolves_when_one_is_back(
        make_stack, hooks: WebhookReceiver, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - {{name: chat, type: slack, url: "{hooks.url}/chat"}}
self_alert:
  keys: [key-2]
  channels: [chat]
  for_s: 2
""")
    stack = make_stack(keys=2, RELAY_ROUTES_FILE=str(routes), RELAY_SELF_CHECK_S="1")
    stack.start_simulator()
    stack.start_ingress()
    first = stack.start_worker(0)
    stack.start_worker(1)
    wait_until(lambda: all(row["worker_alive"] for row in stack.status()), 20, "workers")
    stack.start_channel_worker()
    first.kill()  # its heartbeat lapses with its lease (5 s here)

    def alarms(action: str) -> list[dict[str, object]]:
        return [e for e in stack.delivered() if e["dedup_key"] == "pd-relay-self-no-worker-key-1"
                and e["event_action"] == action]

    raised = wait_until(lambda: alarms("trigger"), 30, "the no-worker alarm at PagerDuty")
    assert raised[0]["routing_key"] == stack.keys[1]  # on the other key
    chat = wait_until(lambda: hooks.taken("/chat"), 20, "the alarm in chat")
    assert "no worker delivers key key-1" in chat[0]["text"]
    stack.start_worker(0)
    wait_until(lambda: alarms("resolve"), 30, "the alarm resolved")
    wait_until(lambda: len(hooks.taken("/chat")) == 2, 20, "the resolve in chat")
    assert hooks.taken("/chat")[1]["text"].startswith("*✅ RESOLVED [critical]")
    assert len(alarms("trigger")) == 1  # one alarm for the condition, however many checks


def test_retention_keeps_redis_flat_over_a_run(make_stack, tmp_path: Path) -> None:
    """Rounds of events, a share refused by PagerDuty (dead letters): once each round is
    old enough, what the relay kept per event is gone, and Redis holds what it held
    before the run."""
    stack = make_stack(keys=1, RELAY_DEAD_LETTER_DAYS=str(3 / 86_400),  # 3 s
                       RELAY_INCIDENT_TTL_S="3", RELAY_RETENTION_S="1", RELAY_RATE_PER_MIN="6000")
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()
    client = stack.redis.client()
    wait_until(lambda: client.exists("rq:queue:pdr:housekeeping") or client.keys("rq:job:ret*"),
               20, "housekeeping to run")

    kid = stack.status()[0]["key_id"]

    def per_event() -> dict[str, int]:
        return {"dead": client.hlen("pdr:dead"), "incidents": client.zcard(f"pdr:incidents:{kid}"),
                "probes": len(client.keys("pdr:probe:*"))}

    baseline = per_event()
    for round_ in range(3):
        stack.sim_config(reject_rate=0.2)
        for n in range(50):
            event = trigger(f"r{round_} n{n}", dedup_key=f"r{round_}-{n}")
            assert stack.post(event).status_code == 202
        # remembered now; the incidents' 3 s may pass while the round is delivered (each
        # status below runs the CLI), so look before waiting
        assert per_event()["incidents"] > 0
        wait_until(lambda: (row := stack.status()[0])["queued"] + row["in_flight"] == 0,
                   30, "the round delivered")
        wait_until(lambda: per_event() == baseline, 30, "the round swept")
    assert stack.status()[0]["dead_letters"] == 0
