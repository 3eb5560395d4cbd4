"""End to end: keys added, drained or removed while incidents are open."""

from __future__ import annotations

from relay.stack.processes import wait_until
from tests.conftest import make_key, trigger


def test_keys_added_mid_incident_keep_every_follow_up_on_its_triggers_key(make_stack) -> None:
    stack = make_stack(keys=2)
    stack.start_simulator()
    stack.start_ingress()
    for n in range(40):
        assert stack.post(trigger(f"incident {n}", dedup_key=f"open-{n}")).status_code == 202
    stack.keys += [make_key(), make_key()]  # two keys added, the ingress restarted
    (stack.workdir / "keys.txt").write_text("\n".join(stack.keys) + "\n")
    stack.processes[-1].terminate()
    stack.start_ingress()
    for n in range(40):
        for action in ("acknowledge", "resolve"):
            reply = stack.post({"event_action": action, "dedup_key": f"open-{n}"},
                               url=stack.ingress_urls[-1])
            assert reply.status_code == 202
    for index in range(4):
        stack.start_worker(index)
    wait_until(lambda: len(stack.delivered()) >= 120, 30, "every event")
    keys_of: dict[str, set[str]] = {}
    for event in stack.delivered():
        keys_of.setdefault(event["dedup_key"], set()).add(event["routing_key"])
    assert all(len(keys) == 1 for keys in keys_of.values()), "a follow-up changed keys"
    assert stack.sim_get("stats")["counts"].get("orphans", 0) == 0


def test_a_key_removed_with_events_left_stops_start_up_until_forgotten(make_stack) -> None:
    stack = make_stack(keys=2)
    stack.start_ingress()
    gone = stack.keys[1]
    assert stack.post([trigger(dedup_key=f"q{n}", routing_key=gone) for n in range(3)]
                      ).status_code == 202
    (stack.workdir / "keys.txt").write_text(stack.keys[0] + "\n")
    for command in (["ingress"], ["worker", "--key-index", "0"], ["check"]):
        result = stack.cli(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert "3 queued, 0 in flight and 3 open incident(s)" in result.stderr
        assert gone not in result.stderr + result.stdout
    [row] = [row for row in stack.status() if row["state"] == "removed"]
    assert row["queued"] == 3
    kid = result.stderr.split("forget-key ")[1].split("`")[0]
    forgotten = stack.cli("forget-key", kid)
    assert forgotten.returncode == 0 and "3 event(s) moved" in forgotten.stdout
    assert stack.cli("check").returncode == 0
    assert len(stack.cli("dead-letters", "list").stdout.splitlines()) == 3
