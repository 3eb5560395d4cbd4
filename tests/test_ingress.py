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
from tests.conftest import UNIX, make_key, trigger

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
        Settings(routing_keys=(ruleset, plain), keys_file=settings.keys_file,
                 allow_anonymous=True), client=fake)
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
        Settings(routing_keys=(make_key("R"),), keys_file=settings.keys_file,
                 allow_anonymous=True), client=fake)
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
    assert client.get("/readyz", environ_base=UNIX).status_code == 503
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
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    assert 'pd_relay_events_accepted_total{kind="alert"} 2.0' in text
    assert 'pd_relay_requests_refused_total{reason="InvalidEvent"} 1.0' in text
    depth = [line for line in text.splitlines() if line.startswith("pd_relay_queued{")]
    assert sum(float(line.split()[-1]) for line in depth) == 2
    assert all(key not in text for key in keys)


def _raw(summary: str = "disk full", details: str = "{}", extra: str = "") -> str:
    """A trigger's JSON text, written by hand to hold what json.dumps would not write."""
    return (f'{{"event_action": "trigger", {extra}"payload": {{"summary": "{summary}", '
            f'"source": "db1", "severity": "info", "custom_details": {details}}}}}')


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
     400, ["nested deeper than 64 levels"]),
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
    # what PagerDuty would refuse, or what cannot be stored and sent as it came
    ("lone surrogate", {"data": _raw(summary="\\ud800 disk"), "content_type": "application/json"},
     400, ["payload.summary holds a lone surrogate (\\ud800)"]),
    ("lone surrogate in dedup_key", {"data": '{"event_action": "resolve", "dedup_key": "a\\udfff"}',
                                     "content_type": "application/json"},
     400, ["dedup_key holds a lone surrogate (\\udfff)"]),
    ("lone surrogate in a name", {"data": _raw(details='{"\\udfff": 1}'),
                                  "content_type": "application/json"},
     400, ["payload.custom_details holds a lone surrogate (\\udfff) in a member name"]),
    ("number overflowing to infinity", {"data": _raw(details='{"n": [1, -1e999]}'),
                                        "content_type": "application/json"},
     400, ["payload.custom_details.n[1] is a number too large for JSON"]),
    ("duplicate member name", {"data": _raw(extra='"event_action": "resolve", '),
                               "content_type": "application/json"},
     400, ["body: member 'event_action' appears twice in one object"]),
    ("summary not a string", {"json": trigger(7)}, 400, ["payload.summary is missing or blank"]),
    ("severity a list", {"json": {"event_action": "trigger", "payload": {
        "summary": "x", "source": "y", "severity": ["info"]}}}, 400,
     ["payload.severity must be one of critical, error, warning, info, got ['info']"]),
    ("image src not a string", {"json": trigger(images=[{"src": ["https://x"]}])}, 400,
     ["images[0].src is missing or blank"]),
    ("image alt not a string", {"json": trigger(images=[{"src": "https://x", "alt": 1}])},
     400, ["images[0].alt must be a string, got a number"]),
    ("link text not a string", {"json": trigger(links=[{"href": "https://x", "text": {}}])},
     400, ["links[0].text must be a string, got an object"]),
    ("client_url not a string", {"json": trigger(client_url=["x"])}, 400,
     ["client_url must be a string, got a list"]),
    ("an event too large as sent",  # 1e5 is stored as 100000.0: 480 KB become 1 MB
     {"data": _raw(details='{"n": [' + ",".join(["1e5"] * 120_000) + "]}"),
      "content_type": "application/json"},
     400, ["is larger than PagerDuty's limit of 512000 bytes once stored"]),
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


def _keys_of(fake: fakeredis.FakeRedis, keys: tuple[str, ...]) -> dict[str, set[str]]:
    """dedup_key -> the keys its queued events are on."""
    found: dict[str, set[str]] = {}
    for key in keys:
        for record in queued(fake, key):
            found.setdefault(record.event["dedup_key"], set()).add(key)
    return found


def test_follow_ups_stay_on_their_triggers_key_when_keys_are_added(settings, fake) -> None:
    """Rendezvous hashing would move about 2/5 of the incidents to two new keys; the
    remembered key keeps every acknowledge and resolve with its trigger."""
    client = create_app(settings, client=fake).test_client()
    for n in range(60):
        assert client.post("/v2/enqueue", json=trigger(dedup_key=f"inc-{n}")).status_code == 202
    more = (*settings.routing_keys, make_key(), make_key())
    grown = create_app(replace(settings, routing_keys=more), client=fake).test_client()
    for n in range(60):
        for action in ("acknowledge", "resolve"):
            event = {"event_action": action, "dedup_key": f"inc-{n}"}
            assert grown.post("/v2/enqueue", json=event).status_code == 202
    spread = _keys_of(fake, more)
    assert all(len(on) == 1 for on in spread.values()), "an incident moved to another key"
    assert not set().union(*spread.values()) & set(more[3:])
    # new incidents do use the new keys, and resolves forgot the old ones
    for n in range(60):
        grown.post("/v2/enqueue", json=trigger(dedup_key=f"new-{n}"))
    assert set().union(*_keys_of(fake, more).values()) & set(more[3:])
    assert sum(fake.zcard(NAMES.incidents(key_id(k))) for k in more) == 60


def test_a_draining_key_takes_no_new_incidents_but_keeps_its_own(settings, fake) -> None:
    keys = settings.routing_keys
    client = create_app(settings, client=fake).test_client()
    for n in range(30):
        client.post("/v2/enqueue", json=trigger(dedup_key=f"old-{n}"))
    on_first = {d for d, on in _keys_of(fake, keys).items() if on == {keys[0]}}
    assert on_first
    draining = create_app(replace(settings, draining_keys=frozenset({keys[0]})),
                          client=fake).test_client()
    for n in range(30):
        draining.post("/v2/enqueue", json=trigger(dedup_key=f"new-{n}"))
        draining.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": f"old-{n}"})
    spread = _keys_of(fake, keys)
    assert all(keys[0] not in spread[f"new-{n}"] for n in range(30))
    assert all(spread[d] == {keys[0]} for d in on_first)


def test_an_event_naming_its_key_moves_its_own_incident_there(api, fake, keys,
                                                             tokens) -> None:
    source = {"X-API-Key": tokens["source"]}
    api.post("/v2/enqueue", json=trigger(dedup_key="moved", routing_key=keys[1]),
             headers=source)
    api.post("/v2/enqueue", json=trigger(dedup_key="moved", routing_key=keys[2]),
             headers=source)
    api.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "moved"},
             headers=source)
    assert [r.event["event_action"] for r in queued(fake, keys[2])] == ["trigger", "resolve"]
    assert sum(fake.zcard(NAMES.incidents(key_id(k))) for k in keys) == 0
    assert fake.hlen(NAMES.owners) == 0  # forgotten with the incident


def test_another_key_holder_can_neither_move_nor_close_an_incident(client, fake,
                                                                   keys) -> None:
    """The finding of issue 23: a trigger naming its own key and another sender's
    dedup_key moved that incident, so its owner's resolve went to the wrong service."""
    assert client.post("/v2/enqueue", json=trigger(dedup_key="theirs",
                                                   routing_key=keys[1])).status_code == 202
    moved = client.post("/v2/enqueue", json=trigger(dedup_key="theirs", routing_key=keys[2]))
    assert moved.status_code == 403 and "opened by another sender" in moved.json["errors"][0]
    for resolve in ({"routing_key": keys[2]}, {}):  # another key's holder, anyone
        answer = client.post("/v2/enqueue", json={"event_action": "resolve",
                                                  "dedup_key": "theirs", **resolve})
        assert answer.status_code == 403, answer.json
    own = client.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "theirs",
                                           "routing_key": keys[1]})
    assert own.status_code == 202
    assert [r.event["event_action"] for r in queued(fake, keys[1])] == ["trigger", "resolve"]
    assert queued(fake, keys[2]) == []


def test_a_change_event_naming_its_key_is_queued_there(client, fake, keys) -> None:
    reply = client.post("/v2/change/enqueue",
                        json=[{"routing_key": keys[1], "payload": {"summary": "deploy"}}] * 2)
    assert reply.status_code == 202, reply.json
    assert [r.kind for r in queued(fake, keys[1])] == ["change", "change"]


def test_an_incident_is_forgotten_once_quiet_for_its_ttl(settings, fake, keys) -> None:
    import time

    from relay.housekeeping.retention import sweep
    from relay.router import incident_id
    from relay.store import now_ms

    quick = replace(settings, incident_ttl_s=0.01)
    client = create_app(quick, client=fake).test_client()
    client.post("/v2/enqueue", json=trigger(dedup_key="quiet"))
    remembered = [NAMES.incidents(key_id(k)) for k in keys]
    assert any(fake.zscore(name, incident_id("quiet")) for name in remembered)
    deadline = time.monotonic() + 5
    while any(fake.zscore(name, incident_id("quiet")) for name in remembered):
        assert time.monotonic() < deadline, "never forgotten"
        # the retention sweep forgets it (a store forgets only an incident it looks up
        # since issue 26: tests/test_enqueue_index.py)
        sweep(fake, NAMES, quick, now_ms())
    assert not fake.hexists(NAMES.where, incident_id("quiet"))


def test_change_events_check_their_fields_as_alert_events_do(client) -> None:
    change = {"payload": {"summary": "deployed v2", "source": "ci"}}
    for extra, problem in (({"dedup_key": {"a": 1}}, "dedup_key must be a string"),
                           ({"dedup_key": "x" * 256}, "dedup_key must be a string"),
                           ({"event_action": "trigger"}, "does not belong in a change event")):
        reply = client.post("/v2/change/enqueue", json=dict(change, **extra))
        assert reply.status_code == 400 and problem in reply.json["errors"][0], reply.json
    assert client.post("/v2/change/enqueue", json=change).status_code == 202
