"""Signing in to the dashboard: a server-side session (never the operator's token in the
cookie) that expires, is revoked at sign-out and bounded per operator; CSRF tokens on
every form, sign-in included; nobody looks without a token or a session, loopback or not
(relay/ui/sessions.py, relay/ui/access.py)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.names import Names
from relay.settings import Settings
from relay.ui.sessions import Sessions
from tests.conftest import FAR, UNIX, csrf_of, sign_in, trigger

NAMES = Names("pdr")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ui(routed: Settings, fake, clock: Clock) -> FlaskClient:
    return create_app(routed, client=fake, clock=clock).test_client()


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("pd_relay_session")
    assert cookie is not None
    return cookie.value


def test_a_loopback_client_without_a_token_reads_nothing(ui) -> None:
    assert ui.post("/v2/enqueue", json=trigger(dedup_key="secret")).status_code == 202
    for path in ("/ui/", "/ui/events", "/ui/events?dedup_key=secret", "/ui/dead-letters"):
        page = ui.get(path)
        assert page.status_code == 401 and b"secret" not in page.data, path
        assert b"Operator token" in page.data
    for path in ("/api/v1/events", "/metrics", "/readyz"):
        answer = ui.get(path)
        assert answer.status_code == 401, path
        assert answer.json["status"] == "unauthorized" and answer.json["errors"]
        assert "secret" not in answer.text and "pd_relay_" not in answer.text


def test_viewing_without_a_token_only_with_the_open_view_setting(routed, fake) -> None:
    open_view = create_app(replace(routed, ui_open_view=True), client=fake).test_client()
    assert open_view.get("/ui/", environ_base=FAR).status_code == 200
    assert open_view.get("/api/v1/events", environ_base=FAR).status_code == 200
    assert open_view.get("/metrics", environ_base=FAR).status_code == 401  # not a view
    letters = open_view.post("/ui/dead-letters/x-1/purge", environ_base=FAR)
    assert letters.status_code == 401  # changes still need an admin
    with pytest.raises(Exception, match="RELAY_UI_OPEN_VIEW='maybe'"):
        Settings.from_env({"RELAY_UI_OPEN_VIEW": "maybe", "RELAY_KEYS_FILE":
                           str(routed.keys_file)})


def test_the_sign_in_cookie_is_a_session_not_the_token(ui, fake, tokens) -> None:
    signed = sign_in(ui, tokens["viewer"], environ_base=FAR)
    assert signed.status_code == 303
    [cookie] = [c for c in signed.headers.getlist("Set-Cookie") if "_session=" in c]
    assert tokens["viewer"] not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    sid = session_cookie(ui)
    assert len(sid) >= 40 and sid != tokens["viewer"]
    assert b"vera" in ui.get("/ui/", environ_base=FAR).data
    # Redis keeps the session id only as its hash (promise 6: it is a credential)
    stored = " ".join(f"{k} {fake.dump(k)!r}" for k in fake.keys("*"))
    assert sid not in stored and tokens["viewer"] not in stored
    assert hashlib.sha256(sid.encode()).hexdigest() in stored
    for key in fake.keys("pdr:ui:*"):
        assert fake.ttl(key) > 0, key  # every session key expires


def test_over_https_the_cookie_is_secure_and_host_only(ui, tokens) -> None:
    https = {"base_url": "https://localhost"}
    signed = sign_in(ui, tokens["viewer"], **https)
    [cookie] = [c for c in signed.headers.getlist("Set-Cookie") if "_session=" in c]
    assert cookie.startswith("__Host-pd_relay_session=") and "Secure" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie
    assert ui.get("/ui/", **https).status_code == 200


def test_x_forwarded_proto_is_believed_only_from_the_proxy(ui, tokens, routed) -> None:
    https = {"X-Forwarded-Proto": "https"}
    form = ui.get("/ui/sign-in", headers=https)  # over TCP from 127.0.0.1: not nginx
    signed = ui.post("/ui/sign-in", data={"token": tokens["viewer"], "csrf": csrf_of(form.data)},
                     headers=https)
    assert signed.status_code == 303
    assert not any("Secure" in c for c in signed.headers.getlist("Set-Cookie"))
    form = ui.get("/ui/sign-in", headers=https, environ_base=UNIX)  # nginx's socket
    signed = ui.post("/ui/sign-in", data={"token": tokens["viewer"], "csrf": csrf_of(form.data)},
                     headers=https, environ_base=UNIX)
    [cookie] = [c for c in signed.headers.getlist("Set-Cookie") if "_session=" in c]
    assert cookie.startswith("__Host-") and "Secure" in cookie


def test_a_cookie_replayed_after_sign_out_is_refused(ui, tokens) -> None:
    sign_in(ui, tokens["admin"])
    sid = session_cookie(ui)
    page = ui.get("/ui/")
    assert page.status_code == 200
    out = ui.post("/ui/sign-out", data={"csrf": csrf_of(page.data)})
    assert out.status_code == 303
    ui.set_cookie("pd_relay_session", sid)  # the old cookie, replayed
    again = ui.get("/ui/")
    assert again.status_code == 401 and b"sign in again" in again.data
    assert ui.get("/api/v1/events").status_code == 401


def test_a_session_expires(ui, clock, routed, tokens) -> None:
    sign_in(ui, tokens["viewer"])
    assert ui.get("/ui/").status_code == 200
    clock.now += routed.ui_idle_minutes * 60 - 1  # used: idle again from now
    assert ui.get("/ui/").status_code == 200
    clock.now += routed.ui_idle_minutes * 60 + 1  # idle too long
    assert ui.get("/ui/").status_code == 401
    sign_in(ui, tokens["viewer"])
    for _ in range(int(routed.ui_session_hours * 60 / routed.ui_idle_minutes) + 1):
        assert ui.get("/ui/").status_code == 200, "busy, within the session's hours"
        clock.now += routed.ui_idle_minutes * 60 - 1
    assert ui.get("/ui/").status_code == 401  # past its hours, however busy


def test_a_session_ends_with_its_operator(ui, routed, tokens, fake) -> None:
    sign_in(ui, tokens["viewer"])
    assert ui.get("/ui/").status_code == 200
    text = routed.routes_file.read_text()
    routed.routes_file.write_text(text.replace("name: vera", "name: vera2"))
    ui.application.extensions["pd_relay_policy"].reload()
    assert ui.get("/ui/").status_code == 401  # no operator vera any more
    routed.routes_file.write_text(text)
    ui.application.extensions["pd_relay_policy"].reload()
    sign_in(ui, tokens["viewer"])
    assert ui.get("/ui/").status_code == 200
    # the same name with another token: the session of the old token ends
    other = text.replace(f"{hashlib.sha256(tokens['viewer'].encode()).hexdigest()}",
                         "0" * 64)
    routed.routes_file.write_text(other)
    ui.application.extensions["pd_relay_policy"].reload()
    assert ui.get("/ui/").status_code == 401


def test_signing_in_again_and_again_is_bounded(ui, fake, routed, tokens, clock) -> None:
    sign_in(ui, tokens["viewer"])
    first = session_cookie(ui)
    for _ in range(routed.ui_sessions_max + 5):  # each a browser of its own
        clock.now += 1
        assert sign_in(ui.application.test_client(), tokens["viewer"]).status_code == 303
    records = [k for k in fake.keys("pdr:ui:session:*")]
    assert len(records) == routed.ui_sessions_max
    assert all(fake.ttl(k) > 0 for k in fake.keys("pdr:ui:*"))
    ui.set_cookie("pd_relay_session", first)  # the oldest was dropped
    assert ui.get("/ui/").status_code == 401


def recorded(sessions: Sessions) -> list[list[str]]:
    """The KEYS of each run of ``sessions``' script, from now on."""
    runs: list[list[str]] = []
    script = sessions._open

    def recording(keys: list[str], args: list[object]) -> object:
        runs.append(list(keys))
        return script(keys=keys, args=args)

    sessions._open = recording
    return runs


def test_the_session_script_touches_only_the_keys_it_declares(fake, routed, clock) -> None:
    """Redis runs a script correctly (and a cluster at all) only when every key it touches
    is in its KEYS: opening a session past the cap deletes the oldest one's record."""
    sessions = Sessions(fake, replace(routed, ui_sessions_max=2), clock)
    first = sessions.open("vera", "sha256:x")
    for _ in range(2):
        clock.now += 1
        sessions.open("vera", "sha256:x")
    before = set(fake.keys("*"))
    runs = recorded(sessions)
    clock.now += 1
    sessions.open("vera", "sha256:x")
    touched = before ^ set(fake.keys("*"))  # the new record, the oldest one's
    assert len(touched) == 2 and len(fake.keys("pdr:ui:session:*")) == 2
    assert sessions.find(first) is None
    assert touched <= set(runs[-1]), f"undeclared: {touched - set(runs[-1])}"


def test_a_session_started_meanwhile_is_read_again_not_missed(fake, routed, clock) -> None:
    """The script's KEYS come from a read of the operator's sessions just before: one
    started in between (another node) makes it write nothing and be run again."""
    sessions = Sessions(fake, replace(routed, ui_sessions_max=1), clock)
    sessions.open("vera", "sha256:x")
    runs = recorded(sessions)
    real = fake.zrange
    reads = []

    def stale(*args, **kwargs):  # the first read misses the session already there
        reads.append(args)
        return [] if len(reads) == 1 else real(*args, **kwargs)

    fake.zrange = stale
    clock.now += 1
    kept = sessions.open("vera", "sha256:x")
    assert len(runs) == 2, runs
    assert len(fake.keys("pdr:ui:session:*")) == 1 and sessions.find(kept) is not None


def test_sign_in_needs_its_form_token(ui, clock, tokens, caplog) -> None:
    # no token at all, and no pre-session cookie: as another site's form would post
    bare = ui.post("/ui/sign-in", data={"token": tokens["admin"]})
    assert bare.status_code == 403 and b"reload the page" in bare.data
    assert ui.get_cookie("pd_relay_session") is None
    form = ui.get("/ui/sign-in")
    good = csrf_of(form.data)
    wrong = ui.post("/ui/sign-in", data={"token": tokens["admin"], "csrf": good[:-2] + "xx"})
    assert wrong.status_code == 403 and ui.get_cookie("pd_relay_session") is None
    # the right form token without its cookie (another browser's): refused
    other = ui.application.test_client()
    assert other.post("/ui/sign-in", data={"token": tokens["admin"], "csrf": good}
                      ).status_code == 403
    clock.now += 3 * 3600  # a form left open for hours: stale
    stale = ui.post("/ui/sign-in", data={"token": tokens["admin"], "csrf": good})
    assert stale.status_code == 403 and ui.get_cookie("pd_relay_session") is None
    assert sign_in(ui, tokens["admin"]).status_code == 303


def test_changes_need_the_sessions_form_token(ui, fake, tokens) -> None:
    sign_in(ui, tokens["admin"])
    page = ui.get("/ui/dead-letters")
    good = csrf_of(page.data)
    for data in ({}, {"csrf": "nonsense"}, {"csrf": good[:-1]}):
        refused = ui.post("/ui/dead-letters/x-1/purge", data=data)
        assert refused.status_code == 403 and b"CSRF" in refused.data
    cross = ui.post("/ui/dead-letters/x-1/purge", data={"csrf": good},
                    headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    # another session's token is not this one's
    other = ui.application.test_client()
    sign_in(other, tokens["admin"])
    theirs = csrf_of(other.get("/ui/dead-letters").data)
    assert theirs != good
    assert ui.post("/ui/dead-letters/x-1/purge", data={"csrf": theirs}).status_code == 403
    assert ui.post("/ui/dead-letters/x-1/purge", data={"csrf": good}).status_code == 303


def test_metrics_and_readyz_for_operators_the_stack_and_allowed_networks(routed, fake,
                                                                         tokens) -> None:
    app = create_app(replace(routed, admin_allow=Settings.from_env(
        {"RELAY_KEYS_FILE": str(routed.keys_file), "RELAY_ADMIN_ALLOW": "10.9.0.0/16"}
    ).admin_allow), client=fake)
    client = app.test_client()
    for path in ("/metrics", "/readyz"):
        assert client.get(path, environ_base=FAR).status_code == 401
        wrong = client.get(path, headers={"Authorization": "Bearer pdr_nonsense"})
        assert wrong.status_code == 401 and "not one of this relay" in wrong.text
        bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
        assert client.get(path, headers=bearer, environ_base=FAR).status_code == 200
        assert client.get(path, environ_base=UNIX).status_code == 200  # the stack's checks
        # through nginx's socket, for a client it names: that client's rights
        far = {"X-Forwarded-For": "10.1.2.3"}
        assert client.get(path, headers=far, environ_base=UNIX).status_code == 401
        near = {"X-Forwarded-For": "10.9.8.7"}
        assert client.get(path, headers=near, environ_base=UNIX).status_code == 200
        assert client.get(path, environ_base={"REMOTE_ADDR": "10.9.1.1"}).status_code == 200
    sign_in(client, tokens["viewer"])
    assert client.get("/metrics").status_code == 200
    assert client.get("/healthz", environ_base=FAR).json == {"status": "ok"}


def test_a_forged_forwarded_for_is_not_the_client(routed, fake, tokens, caplog) -> None:
    app = create_app(routed, client=fake)
    client = app.test_client()
    forged = {"X-Forwarded-For": "203.0.113.9"}
    with caplog.at_level(logging.INFO, logger="relay.ingest"):
        client.post("/v2/enqueue", json=trigger(dedup_key="over-tcp"), headers=forged)
        client.post("/v2/enqueue", json=trigger(dedup_key="via-nginx"), headers=forged,
                    environ_base=UNIX)
    lines = caplog.text.splitlines()
    [tcp] = [line for line in lines if "dedup_key=over-tcp" in line]
    [nginx] = [line for line in lines if "dedup_key=via-nginx" in line]
    assert "client=127.0.0.1 " in tcp and "203.0.113.9" not in tcp
    assert "client=203.0.113.9 " in nginx
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    for dedup_key, client_seen in (("over-tcp", "127.0.0.1"), ("via-nginx", "203.0.113.9")):
        [story] = client.get("/api/v1/events", query_string={"dedup_key": dedup_key},
                             headers=look).json["events"]
        assert story["steps"][0]["client"] == client_seen  # what the history records
    # a proxy the operator names is believed too
    proxied = create_app(replace(routed, trusted_proxies=Settings.from_env(
        {"RELAY_KEYS_FILE": str(routed.keys_file), "RELAY_TRUSTED_PROXIES": "127.0.0.0/8"}
    ).trusted_proxies), client=fake).test_client()
    with caplog.at_level(logging.INFO, logger="relay.ingest"):
        proxied.post("/v2/enqueue", json=trigger(dedup_key="via-proxy"), headers=forged)
    [line] = [line for line in caplog.text.splitlines() if "dedup_key=via-proxy" in line]
    assert "client=203.0.113.9 " in line


def test_network_settings_refuse_what_is_not_a_network(routed) -> None:
    with pytest.raises(Exception) as raised:
        Settings.from_env({"RELAY_KEYS_FILE": str(routed.keys_file),
                           "RELAY_TRUSTED_PROXIES": "10.0.0.0/8, nowhere",
                           "RELAY_ADMIN_ALLOW": "300.1.1.1",
                           "RELAY_UI_SESSION_HOURS": "0"})
    text = str(raised.value)
    assert "RELAY_TRUSTED_PROXIES" in text and "nowhere" in text
    assert "RELAY_ADMIN_ALLOW" in text and "RELAY_UI_SESSION_HOURS" in text
    parsed = Settings.from_env({"RELAY_KEYS_FILE": str(routed.keys_file),
                                "RELAY_TRUSTED_PROXIES": "10.0.0.0/8 ::1,192.0.2.7"})
    assert [str(n) for n in parsed.trusted_proxies] == ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]


def test_sessions_without_redis_are_a_503_never_a_500(ui, fake, tokens, monkeypatch) -> None:
    import redis

    sign_in(ui, tokens["admin"])

    def down(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(fake, "get", down)
    page = ui.get("/ui/dead-letters")
    assert page.status_code == 503 and b"sessions: Redis does not answer" in page.data
    answer = ui.get("/api/v1/events")
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert ui.post("/ui/sign-out").status_code == 503
    other = ui.application.test_client()
    form = other.get("/ui/sign-in")
    monkeypatch.setattr(fake, "evalsha", down)
    monkeypatch.setattr(fake, "delete", down)
    signed = other.post("/ui/sign-in", data={"token": tokens["admin"], "csrf": csrf_of(form.data)})
    assert signed.status_code == 503
    # a token needs no session: it still reads
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert ui.get("/metrics", headers=bearer).status_code == 200


def test_a_form_token_of_any_characters_is_refused_never_a_500(ui, tokens) -> None:
    form = ui.get("/ui/sign-in")
    odd = ui.post("/ui/sign-in", data={"token": tokens["admin"], "csrf": "é" * 10})
    assert odd.status_code == 403 and csrf_of(form.data)
    sign_in(ui, tokens["admin"])
    assert ui.post("/ui/dead-letters/x-1/purge", data={"csrf": "ü"}).status_code == 403
    assert ui.post("/ui/sign-out", data={"csrf": "ü"}).status_code == 403
