"""Review of issue 28's ingress, end to end: a ping token in the path never reaches
nginx's error log either (promise 6), whatever nginx refuses or fails: a body over its
limit (413), a client over its rate (429), no ingress node answering (502)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis
import requests

from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.stack import render
from relay.stack.processes import wait_until

NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")


@pytest.mark.skipif(NGINX is None, reason="needs nginx")
def test_a_ping_token_never_reaches_nginxs_error_log(make_stack, tmp_path: Path) -> None:
    """Before: nginx's error log (stderr, level warn) printed each such request's line,
    the token in full: 'client intended to send too large body ... request: "POST
    /ping/pdh_.../backup HTTP/1.1"', 'limiting requests ...', 'connect() failed ...'."""
    routes = tmp_path / "routes.yml"
    routes.write_text("heartbeats:\n  - {name: backup, period: 1h, grace: 5m, keys: [key-1]}\n")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(routes))
    client = redis.Redis.from_url(stack.env["RELAY_REDIS_URL"], decode_responses=True)
    token = Heartbeats(client, Names()).new_token("backup")
    node = stack.start_ingress()
    url = stack.start_nginx([node.removeprefix("http://")],
                            limits=render.Limits(rate=1, burst=1))
    ping = f"{url}/ping/{token}/backup"

    wait_until(lambda: requests.get(ping, timeout=5).status_code == 200, 10, "a ping")
    assert requests.post(ping, data=b"x" * 600_000, timeout=10).status_code == 413
    assert 429 in [requests.get(ping, timeout=5).status_code for _ in range(5)]
    [ingress] = [p for p in stack.processes if p.name.startswith("ingress-")]
    ingress.stop()
    wait_until(lambda: requests.get(ping, timeout=5).status_code == 502, 15, "a 502")

    # nginx's access line of its own refusal names the page it answered with
    wait_until(lambda: '/_pd_relay/502.json" 502' in stack.logs_text(), 10, "the 502's line")
    logs = stack.logs_text()
    assert '/_pd_relay/413.json" 413' in logs and '/_pd_relay/429.json" 429' in logs
    assert token not in logs, [line for line in logs.splitlines() if token in line]
