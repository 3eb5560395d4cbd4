"""End to end: the heartbeat checks as operators see them, with real processes (Redis,
ingress, nginx, the CLI) and Debian's chromium driven by Playwright: the Heartbeats
page refreshes by itself as pings arrive, a check's page shows its pings escaped,
``pd-relay status`` and ``--json`` and /metrics say the same."""

from __future__ import annotations

import json

import redis

from relay.auth import digest, new_token
from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.routes.config import load
from tests.e2e.test_ui import WAIT_MS, browser, shoot, sign_in  # noqa: F401 (a fixture)


def test_the_heartbeats_pages_status_and_metrics(make_stack, browser, tmp_path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    viewer = new_token()[0]
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
operators:
  - {{name: vera, role: viewer, tokens: ["{digest(viewer)}"]}}
heartbeats:
  - {{name: nightly, period: 1h, grace: 5m, keys: [key-1], summary: Nightly backup}}
""")
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    node = stack.start_ingress()
    base = stack.start_nginx([node.removeprefix("http://")])
    client = redis.Redis.from_url(stack.env["RELAY_REDIS_URL"], decode_responses=True)
    [check] = load(routes, ("key-1",)).heartbeats
    store = Heartbeats(client, Names("pdr"))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    sign_in(page, base, viewer)

    page.get_by_role("link", name="Heartbeats").click()
    row = page.get_by_role("row").filter(has_text="nightly")
    expect(row).to_contain_text("new")
    expect(row).to_contain_text("never")
    # a ping arrives: the open page says so by itself
    store.ping(check, "success", body=b"<b>backup ok</b>", by="db1")
    expect(row).to_contain_text("ago (success)")
    expect(row.locator(".state")).to_have_text("up")
    shoot(page, tmp_path, "heartbeats")

    row.get_by_role("link", name="nightly").click()
    pings = page.get_by_role("region", name="Last pings")
    expect(pings).to_contain_text("<b>backup ok</b>")  # shown as text, not markup
    assert page.locator("pre b").count() == 0
    store.ping(check, "fail", exit_status=2)
    expect(page.locator(".facts .state")).to_have_text("down")
    expect(pings.get_by_role("row").nth(1)).to_contain_text("fail")
    context.close()

    table = stack.cli("status").stdout
    [line] = [line for line in table.splitlines() if line.startswith("nightly")]
    assert line.split()[1] == "DOWN" and "every 1h, grace 5m" in line, table
    [shown] = json.loads(stack.cli("status", "--json").stdout)["heartbeats"]
    assert shown["state"] == "down" and shown["outages"] == 1
    metrics = stack.session.get(node + "/metrics", timeout=10,
                                headers={"Authorization": f"Bearer {viewer}"}).text
    assert 'pd_relay_heartbeat_up{check="nightly"} 0.0' in metrics
    store.add(Check("added", grace_s=60, period_s=300, keys=("key-1",), origin="cli"))
    assert "added (cli)" in stack.cli("status").stdout  # run-time checks too, at once
