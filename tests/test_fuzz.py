"""Fuzzing the ingress: against its published OpenAPI contract (schemathesis), and with
arbitrary JSON and bytes (hypothesis). No body, header or encoding earns a 5xx, and every
202 stored exactly what was answered; every ping answered 200 is one ping stored."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import fakeredis
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from relay.app import create_app
from relay.heartbeats.model import Check
from relay.settings import Settings
from tests.conftest import make_key
from tests.pingfakes import FakeChecks, FakePings

KEYS = (make_key(), make_key("R"))
REDIS = fakeredis.FakeRedis(decode_responses=True)
PINGS = FakePings()
TOKEN = PINGS.new_token("nightly-backup", "hb_" + "t" * 40)
CHECKS = FakeChecks(Check("nightly-backup", grace_s=300, period_s=86_400),
                    Check("cron-only", grace_s=60, period_s=60, sources=("cron",)))
APP = create_app(Settings(routing_keys=KEYS, allow_anonymous=True), client=REDIS,
                 checks=CHECKS, pings=PINGS)
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.yaml", APP, config=SchemathesisConfig())
FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@SCHEMA.parametrize()
@FAST
def test_the_ingress_keeps_its_openapi_contract(case: Any) -> None:
    """Statuses, bodies and headers as documented, and never a 5xx but a 503."""
    case.call_and_validate(checks=[
        checks.not_a_server_error, checks.status_code_conformance,
        checks.content_type_conformance, checks.response_schema_conformance,
        checks.response_headers_conformance,
    ])


TEXT = st.text(st.characters(exclude_categories=()))  # lone surrogates too
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries({}, optional={
    "routing_key": st.sampled_from(KEYS) | st.text(),
    "event_action": st.sampled_from(["trigger", "acknowledge", "resolve"]) | JSON,
    "dedup_key": st.text() | JSON,
    "payload": st.fixed_dictionaries({}, optional={
        "summary": st.text() | JSON, "source": st.text() | JSON,
        "severity": st.sampled_from(["critical", "error", "warning", "info"]) | JSON,
        "timestamp": st.text() | JSON, "custom_details": JSON,
        "component": JSON, "group": JSON, "class": JSON,
    }) | JSON,
    "images": JSON, "links": JSON, "client": JSON, "client_url": JSON,
})


def _check(reply: Any) -> None:
    """A 202 or the 4xx that says why; a 403 only for an incident another sender opened
    (NAMED sends the same dedup_keys with different keys: promise 7), or for a dedup_key in
    the relay's own alarms' namespace (hypothesis draws the string constants of the code
    under test, ``relay.auth.RESERVED`` among them)."""
    owned = reply.status_code == 403 and any(
        why in reply.get_data() for why in (b"opened by another sender", b"relay's own alarms"))
    assert reply.status_code in (202, 400, 413) or owned, (reply.status_code,
                                                           reply.get_data()[:300])
    assert reply.is_json and reply.json["status"]


NAMED = st.fixed_dictionaries({  # events naming a configured key, often valid
    "routing_key": st.sampled_from(KEYS),
    "event_action": st.sampled_from(["trigger", "acknowledge", "resolve"]),
    "dedup_key": st.sampled_from(["a", "b"]),
    "payload": st.fixed_dictionaries({"summary": st.sampled_from(["s", " "]), "source": TEXT,
                                      "severity": st.sampled_from(["info", "bad"])}),
})


@given(body=FIELDS | NAMED | st.lists(FIELDS | NAMED, min_size=1, max_size=3) | JSON,
       path=st.sampled_from(["/v2/enqueue", "/v2/change/enqueue"]))
@FAST
def test_arbitrary_json_gets_a_202_or_a_4xx(body: Any, path: str) -> None:
    queued = sum(REDIS.llen(name) for name in REDIS.keys("pdr:queue:*"))
    reply = APP.test_client().post(path, data=json.dumps(body), content_type="application/json")
    _check(reply)
    now = sum(REDIS.llen(name) for name in REDIS.keys("pdr:queue:*"))
    expected = (len(body) if isinstance(body, list) else 1) if reply.status_code == 202 else 0
    assert now - queued == expected


# Raw JSON that json.dumps never writes: numbers overflowing to infinity, lone surrogates,
# repeated member names. Each stands in for a marker string once the body is dumped.
HOSTILE = ["1e999", "-1e999", '"\\ud800"', '"x\\udfffy"', '"a", "a": 1']


def _raw(event: Any, picks: list[int]) -> bytes:
    text = json.dumps(event)
    for n, pick in enumerate(picks):
        text = text.replace(f'"@{n}@"', HOSTILE[pick], 1)
    return text.encode()


MARK = st.integers(0, 3).map(lambda n: f"@{n}@")
NEAR_VALID = st.builds(
    lambda summary, details, dedup, picks: _raw({
        "event_action": "trigger", "dedup_key": dedup,
        "payload": {"summary": summary, "source": "fuzz", "severity": "info",
                    "custom_details": details}}, picks),
    summary=TEXT.filter(str.strip) | MARK, details=st.dictionaries(TEXT, JSON | MARK, max_size=3),
    dedup=TEXT.filter(str.strip) | MARK,
    picks=st.lists(st.integers(0, len(HOSTILE) - 1), min_size=4, max_size=4),
)


@example(body=b'{"event_action": "trigger", "dedup_key": "pd-relay-self-x", "payload": '
              b'{"summary": "s", "source": "f", "severity": "info"}}',
         content_type="application/json")  # a draw that failed a helper's unit run
@given(body=st.binary(max_size=300) | NEAR_VALID,
    content_type=st.sampled_from(["application/json", "application/json; charset=latin-1",
                                  "text/plain", "application/x+json", ""]))
@FAST
def test_arbitrary_bytes_and_content_types_get_a_4xx_or_a_202(body: bytes,
                                                              content_type: str) -> None:
    reply = APP.test_client().post("/v2/enqueue", data=body, content_type=content_type)
    _check(reply)


NAME = st.sampled_from(["nightly-backup", "cron-only"]) | st.text(max_size=30)
SIGNAL = st.sampled_from(["start", "fail", "log", "0", "7", "255", "256", "-1", "0255"]) | \
    st.text(max_size=8)
TOKENS = st.sampled_from([TOKEN, "hb_" + "w" * 40]) | st.text(max_size=45)
PATHS = st.tuples(NAME) | st.tuples(NAME, SIGNAL) | st.tuples(TOKENS, NAME) | \
    st.tuples(TOKENS, NAME, SIGNAL) | st.lists(st.text(max_size=10), max_size=5)


@given(segments=PATHS, body=st.binary(max_size=200),
       method=st.sampled_from(["GET", "POST", "HEAD"]),
       headers=st.sampled_from([{}, {"X-API-Key": "pdr_unknown"}, {"X-Routing-Key": KEYS[0]}]))
@FAST
def test_any_ping_path_gets_a_200_or_a_4xx(segments: tuple[str, ...], body: bytes, method: str,
                                           headers: dict[str, str]) -> None:
    """Whatever the path's segments, body, method and credentials: a 200 and one ping
    stored, or a 4xx (JSON, but for HEAD) and none."""
    before = len(PINGS.calls)
    path = "/ping/" + "/".join(quote(segment, safe="") for segment in segments)
    reply = APP.test_client().open(path, method=method, data=body, headers=headers)
    assert reply.status_code in (200, 400, 401, 403, 404), (path, reply.status_code)
    assert len(PINGS.calls) - before == (1 if reply.status_code == 200 else 0)
    if method != "HEAD":
        assert reply.is_json and reply.json
