"""End to end: an incident belongs to the sender that opened it (promise 7, issue 23),
with real ingress, worker, Redis and PagerDuty simulator processes: another source, a
holder of another key, or an anonymous sender neither closes, re-triggers nor moves it;
the owner does; a source bound to its routes pages no other team."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relay.auth import new_token
from relay.stack.processes import wait_until
from tests.test_ownership import event as alert


def test_nobody_but_its_sender_closes_or_moves_an_incident(make_stack, tmp_path: Path) -> None:
    pay, pay_hash = new_token()
    dba, dba_hash = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
sources:
  - name: payments-ci
    api_keys: ["{pay_hash}"]
    match: ['custom_details.service="payments"']
    routes: [payments]
  - name: dba
    api_keys: ["{dba_hash}"]
routes:
  - name: payments
    match: ['custom_details.service="payments"', 'severity>="error"']
    keys: [key-1]
  - name: databases
    match: ['source=~"db[0-9]+.*"']
    keys: [key-2]
""")
    stack = make_stack(keys=2, RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    url = stack.start_ingress()
    for index in range(2):
        stack.start_worker(index)

    def post(body: Any, token: str | None = None) -> Any:
        headers = {"X-API-Key": token} if token else {}
        return stack.session.post(url + "/v2/enqueue", json=body, headers=headers, timeout=10)

    assert post(alert("trigger", "pay-db"), pay).status_code == 202
    # another source, with a payload its own matchers would take; a holder of the other
    # key naming it (a move); the same holder's resolve: each refused, nothing stored
    forged = dict(alert("resolve", "pay-db"), payload=alert("trigger", "x")["payload"])
    assert post(forged, dba).status_code == 403
    moved = dict(alert("trigger", "pay-db", "db", source="db1"), routing_key=stack.keys[1])
    assert post(moved).status_code == 403
    assert post(dict(alert("resolve", "pay-db"), routing_key=stack.keys[1])).status_code == 403
    # payments-ci's warning about db1 would fall through to the databases route: refused
    stray = post(alert("trigger", "pay-warn", severity="warning", source="db1"), pay)
    assert stray.status_code == 403 and "route databases" in stray.json()["errors"][0]
    # its owner closes it, on the key it was opened on
    assert post(alert("resolve", "pay-db"), pay).status_code == 202

    wait_until(lambda: len(stack.delivered()) == 2, 30, "the trigger and its resolve")
    delivered = [(e["dedup_key"], e["event_action"], e["routing_key"])
                 for e in stack.delivered()]
    assert delivered == [("pay-db", "trigger", stack.keys[0]),
                         ("pay-db", "resolve", stack.keys[0])]
    counts = stack.sim_get("stats")["counts"]
    assert counts.get("misrouted", 0) == 0 and counts.get("orphans", 0) == 0
    logs = stack.logs_text()
    assert "routing-key acts on incident pay-db, which s:payments-ci opened" in logs

    def refused() -> dict[str, int]:  # each node adds its counts every second
        found = json.loads(stack.cli("status", "--json").stdout)["sources"]
        return {row["name"]: row["refused"] for row in found}

    wait_until(lambda: refused().get("routing-key") == 2, 15, "the refusals counted")
    assert refused()["dba"] == 1 and refused()["payments-ci"] == 1
