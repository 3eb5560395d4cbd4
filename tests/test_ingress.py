"""The ingress over HTTP (Flask test client, fakeredis): answers, routing, storage."""

import json
from dataclasses import replace

import fakeredis
import pytest
import redis
from flask.testing import FlaskClient

from relay.app import create_app
from relay.keys import key_id, mask
from relay.names import Names
from relay.settings import Settings
from relay.store import Record
from tests.conftest import make_key, trigger

NAMES = Names()


def queued(fake: fakeredis.FakeRedis, key: str) -> list[Record]:
    return [Record.decode(raw) for raw in fake.lrange(NAMES.queue(key_id(key)), 0, -1)]


def all_queued(fake: fakeredis.FakeRedis, keys: tuple[str, ...]) -> list[Record]:
    return [record for key in keys for record in queued(fake, key)]


def test_a_trigger_is_queued_and_answered_as_pagerduty_does(client, fake, keys) -> None:
    reply = client.post("/v2/enqueue", json=trigger(dedup_key="db1-disk"))
    assert reply.status_code == 202
    assert reply.json == {"status": "success", "message": "Event queued", "dedup_key": "db1-disk"}
    stored = all_queued(fake, keys)
    assert [r.event["dedup_key"] for r in stored] == ["db1-disk"]
    assert stored[0].kind == "alert" and "routing_key" not in stored[0].event


def test_post_root_is_the_same_endpoint(client, fake, keys) -> None:
    assert client.post("/", json=trigger()).status_code == 202
    assert len(all_queued(fake, keys)) == 1


def test_a_trigger_without_dedup_key_gets_one_minted(client, fake, keys) -> None:
    reply = client.post("/v2/enqueue", json=trigger())
    minted = reply.json["dedup_key"]
    assert len(minted) == 32
    assert all_queued(fake, keys)[0].event["dedup_key"] == minted


def test_one_incident_travels_on_one_key_in_order(client, fake, keys) -> None:
    for n in range(20):
        for action in ("trigger", "acknowledge", "resolve"):
            event = trigger(f"n{n}", dedup_key=f"inc-{n}", event_action=action)
            assert client.post("/v2/enqueue", json=event).status_code == 202
    used = set()
    for key in keys:
        by_incident: dict[str, list[str]] = {}
        for record in queued(fake, key):
            by_incident.setdefault(record.event["dedup_key"], []).append(
                record.event["event_action"])
        for actions in by_incident.values():
            assert actions == ["trigger", "acknowledge", "resolve"]
        used.update((key, inc) for inc in by_incident)
    assert len(used) == 20  # each incident on exactly one key
    assert len({key for key, _ in used}) > 1  # and incidents spread over keys


def test_a_named_routing_key_is_kept(client, fake, keys) -> None:
    for _ in range(5):
        client.post("/v2/enqueue", json=trigger(routing_key=keys[2]))
    assert len(queued(fake, keys[2])) == 5


def test_an_unknown_routing_key_is_refused_masked(client, fake, keys) -> None:
    stranger = make_key()
    reply = client.post("/v2/enqueue", json=trigger(routing_key=stranger))
    assert reply.status_code == 400
    assert reply.json["errors"] == [
        f"routing_key {mask(stranger)} is not a configured routing key"]
    assert stranger not in reply.get_data(as_text=True)
    assert all_queued(fake, keys) == []


def test_a_batch_is_stored_in_one_go_and_answered_with_every_dedup_key(
        client, fake, keys) -> None:
    batch = [trigger(dedup_key="a"), trigger(), {"event_action": "resolve", "dedup_key": "a"}]
    reply = client.post("/v2/enqueue", json=batch)
    assert reply.status_code == 202
    assert reply.json["status"] == "success"
    assert reply.json["dedup_keys"][0] == "a" and reply.json["dedup_keys"][2] == "a"
    assert len(all_queued(fake, keys)) == 3
    assert sum(int(fake.hget(NAMES.stats(key_id(k)), "accepted") or 0) for k in keys) == 3


def test_a_batch_with_one_bad_event_stores_nothing(client, fake, keys) -> None:
    batch = [trigger(), trigger(), {"event_action": "trigger", "payload": {"summary": "x"}}]
    reply = client.post("/v2/enqueue", json=batch)
    assert reply.status_code == 400
    assert reply.json["errors"] == [
        "[2].payload.source is missing or blank",
        "[2].payload.severity is missing or blank",
    ]
    assert all_queued(fake, keys) == []


def test_change_events_go_to_non_ruleset_keys(settings, fake) -> None:
    ruleset, plain = make_key("R"), make_key()
    app = create_app(
        Settings(routing_keys=(ruleset, plain), keys_file=settings.keys_file), client=fake)
    client = app.test_client()
    change = {"payload": {"summary": "deployed v2", "source": "ci"}}
    for _ in range(10):
        assert client.post("/v2/change/enqueue", json=change).status_code == 202
    assert len(queued(fake, plain)) == 10
    assert queued(fake, plain)[0].kind == "change"
    reply = client.post("/v2/change/enqueue", json=dict(change, routing_key=ruleset))
    assert reply.status_code == 400
    assert "ruleset key" in reply.json["errors"][0] and ruleset not in reply.get_data(True)


def test_change_events_are_refused_when_only_ruleset_keys_exist(settings, fake) -> None:
    app = create_app(
        Settings(routing_keys=(make_key("R"),), keys_file=settings.keys_file), client=fake)
    reply = app.test_client().post("/v2/change/enqueue", json={"payload": {"summary": "x"}})
    assert reply.status_code == 400
    assert "ruleset" in reply.json["errors"][0]


def test_redis_down_is_503_with_retry_after_and_never_202(settings) -> None:
    settings = replace(settings, redis_url="redis://127.0.0.1:1/0")
    client = create_app(settings).test_client()
    reply = client.post("/v2/enqueue", json=trigger())
    assert reply.status_code == 503
    assert reply.headers["Retry-After"].isdigit()
    assert reply.json["status"] == "unavailable" and reply.json["errors"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_redis_out_of_memory_is_503(settings, fake, monkeypatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    connection_class = type(fake.connection_pool.get_connection())
    monkeypatch.setattr(connection_class, "read_response", full)
    client = create_app(settings, client=fake).test_client()
    reply = client.post("/v2/enqueue", json=[trigger(), trigger()])
    assert reply.status_code == 503 and "Retry-After" in reply.headers
    monkeypatch.undo()
    assert fake.dbsize() == 0


def test_events_are_stored_again_after_redis_forgets_its_scripts(client, fake) -> None:
    assert client.post("/v2/enqueue", json=trigger()).status_code == 202
    fake.script_flush()  # as after a restart of Redis without its script cache
    assert client.post("/v2/enqueue", json=trigger()).status_code == 202
    assert sum(fake.llen(key) for key in fake.keys("pdr:queue:*")) == 2


def test_metrics_report_accepted_and_queue_depth(client, keys) -> None:
    client.post("/v2/enqueue", json=[trigger(), trigger()])
    client.post("/v2/enqueue", data="nope", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'pd_relay_events_accepted_total{kind="alert"} 2.0' in text
    assert 'pd_relay_requests_refused_total{reason="InvalidEvent"} 1.0' in text
    depth = [line for line in text.splitlines() if line.startswith("pd_relay_queued{")]
    assert sum(float(line.split()[-1]) for line in depth) == 2
    assert all(key not in text for key in keys)


BAD_INPUTS = [
    # (description, kwargs for client.post, status, expected error fragments)
    ("form data", {"data": {"a": "b"}}, 400, ["Content-Type must be application/json"]),
    ("no content type", {"data": "{}"}, 400, ["Content-Type must be application/json"]),
    ("malformed JSON", {"data": "{nope", "content_type": "application/json"}, 400,
     ["malformed JSON"]),
    ("NaN", {"data": '{"a": NaN}', "content_type": "application/json"}, 400,
     ["NaN is not valid JSON"]),
    ("bad UTF-8", {"data": b'{"a": "\xff"}', "content_type": "application/json"}, 400,
     ["malformed JSON"]),
    ("deep nesting", {"data": "[" * 100000 + "]" * 100000, "content_type": "application/json"},
     400, ["nested too deeply"]),
    ("a string", {"json": "trigger"}, 400, ["body: must be a JSON object"]),
    ("null", {"data": "null", "content_type": "application/json"}, 400,
     ["body: must be a JSON object"]),
    ("empty list", {"json": []}, 400, ["empty list"]),
    ("empty object", {"json": {}}, 400,
     ["event_action is missing or blank", "payload is missing"]),
    ("unknown action", {"json": trigger(event_action="explode")}, 400,
     ["event_action must be one of trigger, acknowledge, resolve, got 'explode'"]),
    ("resolve without dedup_key", {"json": {"event_action": "resolve"}}, 400,
     ["dedup_key is required to resolve"]),
    ("acknowledge without dedup_key", {"json": {"event_action": "acknowledge"}}, 400,
     ["dedup_key is required to acknowledge"]),
    ("dedup_key too long", {"json": trigger(dedup_key="x" * 256)}, 400,
     ["dedup_key is too long (maximum is 255 characters)"]),
    ("dedup_key not a string", {"json": trigger(dedup_key=7)}, 400,
     ["dedup_key must be a non-blank string"]),
    ("summary too long", {"json": trigger("x" * 1025)}, 400,
     ["payload.summary is too long (maximum is 1024 characters)"]),
    ("no source", {"json": {"event_action": "trigger",
                            "payload": {"summary": "x", "severity": "info"}}}, 400,
     ["payload.source is missing or blank"]),
    ("bad severity", {"json": {"event_action": "trigger",
                               "payload": {"summary": "x", "source": "y", "severity": "high"}}},
     400, ["payload.severity must be one of critical, error, warning, info, got 'high'"]),
    ("payload not an object", {"json": {"event_action": "trigger", "payload": [1]}}, 400,
     ["payload must be an object, got a list"]),
    ("bad timestamp", {"json": {"event_action": "trigger", "payload": {
        "summary": "x", "source": "y", "severity": "info", "timestamp": "yesterday"}}}, 400,
     ["payload.timestamp must be an ISO 8601 date-time"]),
    ("image without src", {"json": trigger(images=[{"href": "https://x"}])}, 400,
     ["images[0].src is missing or blank"]),
    ("link without href", {"json": trigger(links=[{"text": "runbook"}])}, 400,
     ["links[0].href is missing or blank"]),
    ("links not a list", {"json": trigger(links="https://x")}, 400, ["links must be a list"]),
    ("routing_key malformed", {"json": trigger(routing_key="abc")}, 400,
     ["routing_key must be a 32-character string"]),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "fragments"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_its_status_and_a_json_body_saying_what_and_where(
        client: FlaskClient, fake, keys, kwargs, status, fragments) -> None:
    reply = client.post("/v2/enqueue", **kwargs)
    assert reply.status_code == status
    body = reply.json
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    for fragment in fragments:
        assert any(fragment in error for error in body["errors"]), (fragment, body["errors"])
    assert all_queued(fake, keys) == []


def test_a_body_over_the_limit_is_413_json(client, fake, keys) -> None:
    reply = client.post("/v2/enqueue", json=trigger(payload_pad="x" * 520_000))
    assert reply.status_code == 413
    assert reply.json["status"] == "request too large"
    assert "512000" in reply.json["errors"][0]


def test_unknown_paths_and_methods_answer_json(client) -> None:
    missing = client.post("/v1/nope", json={})
    assert missing.status_code == 404 and missing.json["status"] == "error"
    wrong = client.get("/v2/enqueue")
    assert wrong.status_code == 405 and wrong.json["message"] == "Method Not Allowed"
    assert "POST" in wrong.headers["Allow"]


def test_change_event_validation(client) -> None:
    reply = client.post("/v2/change/enqueue", json={"payload": {"source": "ci"}})
    assert reply.status_code == 400
    assert reply.json["errors"] == ["payload.summary is missing or blank"]
    assert json.loads(reply.get_data())["status"] == "invalid event"
