"""The dashboard's pages and who may do what there, through the Flask app on fakeredis
(the browser tests in tests/e2e/test_ui.py drive the same pages in Chromium)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from relay.keys import key_id
from relay.names import Names
from relay.ui.access import COOKIE
from relay.ui.pages import age
from tests.conftest import FAR, csrf_of, sign_in, trigger

NAMES = Names("pdr")


def dead_letter(fake, settings, dedup_key: str = "bad") -> str:
    """Turn the queued event of ``dedup_key`` into a dead letter, as the worker would."""
    kid = key_id(settings.routing_keys[0])
    queue = NAMES.queue(kid)
    [raw] = [r for r in fake.lrange(queue, 0, -1) if f'"{dedup_key}"' in r]
    fake.lrem(queue, 1, raw)
    letter_id = f"{int(time.time() * 1000):x}-{dedup_key}"
    fake.hset(NAMES.dead, letter_id, json.dumps({
        "id": letter_id, "key_id": kid, "routing_key": "key-1", "failed_at": 1_800_000_000_000,
        "reason": "PagerDuty rejected the event", "status": 400,
        "reply": '{"status":"invalid event"}', "raw": raw}))
    fake.zadd(NAMES.dead_index, {letter_id: 1})
    return letter_id


def test_every_page_for_a_viewer(api, tokens) -> None:
    assert api.post("/v2/enqueue", json=trigger(dedup_key="page-1")).status_code == 202
    assert sign_in(api, tokens["viewer"]).status_code == 303
    home = api.get("/ui/")
    assert home.status_code == 200 and b"Routing keys" in home.data and b"key-1" in home.data
    assert b"No dead letters" in home.data and b"No channels in the routes file" in home.data
    assert home.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in home.headers["Content-Security-Policy"]
    found = api.get("/ui/events?dedup_key=page-1")
    assert found.status_code == 200 and b"page-1" in found.data and b">queued<" in found.data
    assert b"No event matches" in api.get("/ui/events?dedup_key=none").data
    bad = api.get("/ui/events?state=lost")
    assert bad.status_code == 400 and b"state: want one of" in bad.data
    assert b"No dead letters" in api.get("/ui/dead-letters", headers={
        "Authorization": f"Bearer {tokens['viewer']}"}).data
    assert api.get("/ui/dead-letters/nope").status_code == 404
    unknown = api.get("/ui/events/0123456789abcdef")
    assert unknown.status_code == 404 and b"no event 0123456789abcdef" in unknown.data
    bare = api.get("/ui")  # relative: behind nginx the Host header has no port
    assert bare.status_code == 308 and bare.headers["Location"] == "/ui/"
    script = api.get("/ui/static/ui.js")
    assert script.status_code == 200 and b"data-refresh" in script.data
    script.close()


def test_a_far_client_must_sign_in(api, tokens) -> None:
    page = api.get("/ui/", environ_base=FAR)
    assert page.status_code == 401 and b"Operator token" in page.data
    wrong = api.post("/ui/sign-in", data={"token": "pdr_nonsense", "csrf": csrf_of(page.data)},
                     environ_base=FAR)
    assert wrong.status_code == 401 and b"not a token of this relay" in wrong.data
    signed = sign_in(api, tokens["viewer"], environ_base=FAR)
    assert signed.status_code == 303
    [cookie] = [c for c in signed.headers.getlist("Set-Cookie") if COOKIE in c]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = api.get("/ui/", environ_base=FAR)
    assert page.status_code == 200 and b"vera" in page.data
    api.post("/ui/sign-out", data={"csrf": csrf_of(page.data)}, environ_base=FAR)
    assert api.get("/ui/", environ_base=FAR).status_code == 401
    # a session that ended (or never was): the page says so and forgets the cookie
    api.set_cookie(COOKIE, "no-such-session")
    stale = api.get("/ui/")
    assert stale.status_code == 401 and b"sign in again" in stale.data
    assert any(c.startswith(f"{COOKIE}=;") for c in stale.headers.getlist("Set-Cookie"))
    assert api.get("/ui/").status_code == 401  # loopback is nobody


def test_replay_and_purge_need_an_admin_and_the_form(api, fake, routed, tokens,
                                                     caplog) -> None:
    for n in (1, 2):
        assert api.post("/v2/enqueue", json=trigger(dedup_key=f"bad-{n}")).status_code == 202
    first, second = dead_letter(fake, routed, "bad-1"), dead_letter(fake, routed, "bad-2")
    replay = f"/ui/dead-letters/{first}/replay"
    # nobody signed in, even on loopback: sign in first
    assert api.post(replay).status_code == 401
    # a viewer may look, not change
    sign_in(api, tokens["viewer"])
    listed = api.get("/ui/dead-letters")
    assert first.encode() in listed.data and b"PagerDuty rejected the event" in listed.data
    refused = api.post(replay, data={"csrf": csrf_of(listed.data)})
    assert refused.status_code == 403 and b"a viewer, not an admin" in refused.data
    # an admin, but without the form's token, or from another site
    sign_in(api, tokens["admin"])
    csrf = csrf_of(api.get("/ui/dead-letters").data)
    assert api.post(replay).status_code == 403
    cross = api.post(replay, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and fake.hexists(NAMES.dead, first)
    # the admin's form
    with caplog.at_level(logging.WARNING, logger="relay.ui.pages"):
        done = api.post(replay, data={"csrf": csrf})
    assert done.status_code == 303 and "replayed" in done.headers["Location"]
    assert not fake.hexists(NAMES.dead, first)
    kid = key_id(routed.routing_keys[0])
    assert any('"bad-1"' in r for r in fake.lrange(NAMES.queue(kid), 0, -1))
    assert f"dead letter {first}: replay by operator ada from 127.0.0.1: replayed" in caplog.text
    # a script with the admin's token as a bearer needs no form
    api.delete_cookie(COOKIE)
    purge = api.post(f"/ui/dead-letters/{second}/purge",
                     headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert purge.status_code == 303 and not fake.hexists(NAMES.dead, second)
    assert b"No dead letters" in api.get("/ui/dead-letters", headers={
        "Authorization": f"Bearer {tokens['viewer']}"}).data


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0 s"), (59.9, "59 s"), (250, "4 min 10 s"),
                                                (7500, "2 h 5 min"), (273600, "3 d 4 h")])
def test_ages_read_as_people_say_them(seconds: float, shown: str) -> None:
    assert age(seconds) == shown
