"""Review (b) of issue 25: dashboard sessions and CSRF, who may look, the dashboard with
Redis down (this review's findings on the unprivileged stack are tested elsewhere).
Each test failed on the code it was written against (i25-review2)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import redis

from relay.app import create_app
from relay.settings import Settings
from tests.conftest import csrf_of, sign_in

HTTPS = {"base_url": "https://localhost"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# --- 1. sessions and CSRF ----------------------------------------------------------------

def test_over_https_a_sign_in_form_cookie_without_the_host_prefix_is_not_believed(
        routed: Settings, fake: fakeredis.FakeRedis, tokens: dict[str, str]) -> None:
    """Login CSRF: a sibling host (evil.example.com, Domain=example.com) or a man in the
    middle of plain http:// can set ``pd_relay_sign_in`` but never ``__Host-pd_relay_sign_in``;
    over HTTPS the relay reads the bare name when the __Host- one is missing, so the
    attacker knows both halves of the double submit. From a same-site page, or a browser
    without Sec-Fetch-Site, the victim is signed in as the attacker (here: vera)."""
    clock = Clock()
    victim = create_app(routed, client=fake, clock=clock).test_client()
    planted = f"{int(clock.now)}.chosen-by-the-attacker"
    victim.set_cookie("pd_relay_sign_in", planted)  # no __Host- form cookie yet
    answer = victim.post("/ui/sign-in", data={"token": tokens["viewer"], "csrf": planted},
                         **HTTPS)
    assert answer.status_code == 403, "signed in with a form token a sibling host set"


def test_over_https_a_session_cookie_without_the_host_prefix_is_not_believed(
        routed: Settings, fake: fakeredis.FakeRedis, tokens: dict[str, str]) -> None:
    """Session fixation into the attacker's account, no form needed, any browser: the
    attacker (an operator) signs in, then sets ``pd_relay_session=<their id>`` for the
    whole domain from a sibling host (or injects it over http://); over HTTPS the relay
    reads the bare name when the victim has no __Host- cookie."""
    attacker = create_app(routed, client=fake).test_client()
    sign_in(attacker, tokens["viewer"], **HTTPS)
    theirs = attacker.get_cookie("__Host-pd_relay_session")
    assert theirs is not None
    victim = create_app(routed, client=fake).test_client()
    victim.set_cookie("pd_relay_session", theirs.value)
    page = victim.get("/ui/", **HTTPS)
    assert page.status_code == 401, "a cookie without __Host- opened a session over HTTPS"


def test_a_short_idle_limit_still_keeps_a_busy_session(routed: Settings,
                                                      fake: fakeredis.FakeRedis,
                                                      tokens: dict[str, str]) -> None:
    """RELAY_UI_IDLE_MINUTES=1 (any value up to TOUCH_S, 60 s): a session's use is
    written at most every 60 s, and a use 60 s after the last written one is judged idle
    first, so an operator clicking every 30 s is signed out a minute after signing in."""
    clock = Clock()
    ui = create_app(replace(routed, ui_idle_minutes=1.0), client=fake,
                    clock=clock).test_client()
    sign_in(ui, tokens["viewer"])
    for _ in range(4):  # used every 30 s: never idle for a minute
        clock.now += 30
        assert ui.get("/ui/").status_code == 200, f"signed out at +{clock.now - 1.8e9:.0f}s"


def test_sign_out_with_redis_failing_is_a_503_not_a_500(routed: Settings,
                                                       tokens: dict[str, str]) -> None:
    """Promise 1: sign-out finds the session inside its Redis guard but deletes it
    outside; a Redis that fails on that DEL (a timeout, a failover) gives a 500."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    ui = create_app(routed, client=client).test_client()
    sign_in(ui, tokens["admin"])
    page = ui.get("/ui/")
    assert page.status_code == 200

    def down(*names: Any) -> int:
        raise redis.ConnectionError("gone")

    client.delete = down  # type: ignore[method-assign]
    out = ui.post("/ui/sign-out", data={"csrf": csrf_of(page.data)})
    assert out.status_code == 503, out.status_code


def test_the_pages_and_history_api_with_redis_down_are_a_503_not_a_500(
        routed: Settings, tokens: dict[str, str]) -> None:
    """Promise 1 for an operator holding a token: the overview, the history search and
    the dead letters read Redis with no guard, so a Redis outage is a 500."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    ui = create_app(routed, client=client).test_client()
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert ui.get("/api/v1/events", headers=bearer).status_code == 200
    server.connected = False
    for path in ("/api/v1/events", "/ui/", "/ui/events", "/ui/dead-letters"):
        answer = ui.get(path, headers=bearer)
        assert answer.status_code == 503, f"{path}: {answer.status_code}"


def test_a_page_signed_in_by_cookie_with_redis_down_says_when_to_retry(
        routed: Settings, tokens: dict[str, str]) -> None:
    """Promise 1 (503 with Retry-After): the session lookup's 503 is right, but the pages'
    error handler renders it without the Retry-After the API's 503 carries."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    ui = create_app(routed, client=client).test_client()
    sign_in(ui, tokens["viewer"])
    server.connected = False
    page = ui.get("/ui/")
    assert page.status_code == 503
    assert page.headers.get("Retry-After"), "a 503 page without Retry-After"


def app_with_redis_down(settings: Settings) -> Any:
    """A test client of the app whose Redis does not answer."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    server.connected = False
    return create_app(settings, client=client).test_client()


def test_a_dead_letter_replay_or_purge_with_redis_down_is_a_503_with_retry_after(
        routed: Settings, tokens: dict[str, str]) -> None:
    """Promise 1 for the changes too (added with the fix): an admin's replay or purge by
    token needs no session, so nothing guards the dead letters' own Redis calls."""
    ui = app_with_redis_down(routed)
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    for verb in ("replay", "purge"):
        answer = ui.post(f"/ui/dead-letters/x-1/{verb}", headers=bearer)
        assert answer.status_code == 503, f"{verb}: {answer.status_code}"
        assert answer.headers.get("Retry-After"), f"{verb}: a 503 without Retry-After"


def test_the_history_api_with_redis_down_answers_json_with_retry_after(
        routed: Settings, tokens: dict[str, str]) -> None:
    """The API's 503 (added with the fix): JSON in the relay's error shape, Retry-After."""
    api = app_with_redis_down(routed)
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    for path in ("/api/v1/events", "/api/v1/events/0123456789abcdef"):
        answer = api.get(path, headers=bearer)
        assert answer.status_code == 503, f"{path}: {answer.status_code}"
        assert answer.headers.get("Retry-After"), f"{path}: a 503 without Retry-After"
        assert answer.is_json and answer.json["status"] == "unavailable", answer.data[:200]
