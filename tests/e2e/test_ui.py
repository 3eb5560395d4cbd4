"""End to end: the dashboard in a real browser (Debian's chromium, driven by Playwright
for Python), through nginx, with real ingress, worker, Redis and simulator processes.

The screenshots land in the test's directory; with PD_RELAY_SCREENSHOTS=1 they are also
copied to docs/screenshots/, which the README shows:
    PD_RELAY_SCREENSHOTS=1 scripts/test tests/e2e/test_ui.py
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.auth import digest, new_token
from relay.stack.processes import wait_until
from tests.conftest import trigger

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WAIT_MS = 30_000  # every wait for the page is bounded by this
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it as root)")
    with sync_api.sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield found
        found.close()


def shoot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("PD_RELAY_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/ui/sign-in")
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/ui/")


def test_where_is_my_alert_in_a_browser(make_stack, browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    viewer, admin = new_token()[0], new_token()[0]
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
operators:
  - {{name: vera, role: viewer, tokens: ["{digest(viewer)}"]}}
  - {{name: ada, role: admin, tokens: ["{digest(admin)}"]}}
""")
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    node = stack.start_ingress()
    base = stack.start_nginx([node.removeprefix("http://")])
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))

    # a queued event: no worker yet
    assert stack.post(trigger("disk full on db1", dedup_key="disk-db1"), url=base).status_code \
        == 202
    page.goto(base + "/ui/")  # nobody looks without a token, loopback or not
    expect(page.get_by_label("Operator token")).to_be_visible()
    sign_in(page, base, viewer)
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    assert viewer not in cookies.values() and cookies["pd_relay_session"]  # a session id
    row = page.get_by_role("row", name="key-1")
    expect(row).to_contain_text("none")  # no worker
    expect(row.get_by_role("cell").first).to_have_text("1")  # queued
    expect(page.get_by_text("No dead letters")).to_be_visible()
    shoot(page, tmp_path, "overview")

    # the history search, from the keyboard
    page.goto(base + "/ui/events")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("dedup_key").fill("disk-db1")
    page.get_by_label("dedup_key").press("Enter")
    found = page.get_by_role("row").filter(has_text="disk-db1")
    expect(found).to_contain_text("queued")
    page.get_by_role("link", name=found.get_by_role("link").inner_text()).click()
    expect(page.locator(".state")).to_have_text("queued")

    # its story after delivery: the open page refreshes by itself
    stack.start_worker(0)
    expect(page.locator(".state")).to_have_text("delivered")
    expect(page.locator(".steps li")).to_have_count(2)
    expect(page.locator(".steps li").last).to_contain_text("delivered")
    shoot(page, tmp_path, "event")

    # a dead letter: a viewer may not replay it; an admin may
    stack.sim_config(reject_rate=1.0)
    assert stack.post(trigger("bad event", dedup_key="bad-1"), url=base).status_code == 202
    wait_until(lambda: stack.cli("dead-letters", "list").stdout.count("bad-1"), 20,
               "the dead letter")
    stack.sim_config(reject_rate=0.0)
    page.goto(base + "/ui/dead-letters")
    letter = page.get_by_role("row").filter(has_text="bad-1")
    letter.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("alert")).to_contain_text("vera is a viewer, not an admin")
    assert not any(e["dedup_key"] == "bad-1" for e in stack.delivered())

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(base + "/ui/sign-in")
    # the signed-out session is gone: its cookie, replayed, opens nothing
    replayed = stack.session.get(base + "/ui/", cookies=cookies, timeout=10)
    assert replayed.status_code == 401 and "sign in again" in replayed.text
    sign_in(page, base, admin)
    page.goto(base + "/ui/dead-letters")
    shoot(page, tmp_path, "dead-letters")
    page.get_by_role("row").filter(has_text="bad-1").get_by_role("button",
                                                                 name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text("replayed")
    wait_until(lambda: any(e["dedup_key"] == "bad-1" for e in stack.delivered()), 20,
               "the replayed event at PagerDuty")
    assert "replay by operator ada from 127.0.0.1: replayed" in stack.logs_text()

    # on a phone: nothing wider than the screen but the tables' own scrolling
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    small.set_default_timeout(WAIT_MS)
    sign_in(small, base, viewer)
    assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(small, tmp_path, "phone")
    phone.close()
    context.close()
    assert asked and all(url.startswith(base + "/") for url in asked), \
        [u for u in asked if not u.startswith(base)]
