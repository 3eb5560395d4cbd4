"""The history API reading the record in PostgreSQL (a real server: the ``pg_dsn``
fixture) and the stream's tail together: no gap, no duplicate, the new filters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.history import History
from relay.names import Names
from relay.settings import Settings
from tests.conftest import trigger
from tests.pg_rows import entries_of, migrated, write

NAMES = Names("pdr")


@pytest.fixture
def recorded(routed: Settings, pg_dsn: str) -> Settings:
    migrated(pg_dsn)
    return replace(routed, history_dsn=pg_dsn)


@pytest.fixture
def app(recorded: Settings, fake: fakeredis.FakeRedis) -> FlaskClient:
    return create_app(recorded, client=fake).test_client()


def export(fake: fakeredis.FakeRedis, dsn: str, count: int, ack: bool,
           key_names: tuple[str, ...]) -> list[str]:
    """What an exporter does with ``count`` entries: read them in the group, commit their
    steps, and (``ack``) acknowledge them."""
    if not any(g["name"] == NAMES.history_group for g in fake.xinfo_groups(NAMES.history)):
        fake.xgroup_create(NAMES.history, NAMES.history_group, id="0")
    [(_, read)] = fake.xreadgroup(NAMES.history_group, "t", {NAMES.history: ">"}, count=count)
    ids = [entry_id for entry_id, _ in read]
    write(dsn, entries_of(fake, NAMES.history, ids), key_names)
    if ack:
        fake.xack(NAMES.history, NAMES.history_group, *ids)
    return ids


def test_record_and_tail_no_gap_no_duplicate(app, fake, recorded, tokens) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    source = {"X-API-Key": tokens["source"]}
    assert app.post("/v2/enqueue", json=trigger(dedup_key="a")).status_code == 202
    assert app.post("/v2/enqueue", json=trigger("db slow", dedup_key="b", payload={
        "summary": "Replication SLOW on db2", "source": "db1", "severity": "warning"}),
        headers=source).status_code == 202
    assert app.post("/v2/enqueue", json=trigger("noise 1", dedup_key="c")).status_code == 202
    assert app.post("/v2/enqueue", json={"event_action": "resolve",
                                         "dedup_key": "a"}).status_code == 202

    def stories(**args: str) -> list[dict[str, Any]]:
        answer = app.get("/api/v1/events", headers=look, query_string=args)
        assert answer.status_code == 200, answer.json
        return list(answer.json["events"])

    [b] = [s for s in stories() if s["dedup_key"] == "b"]
    History(fake, NAMES, recorded).note("delivered", 0, i=b["id"], d="b", k="key-1", r="ok")
    keys = recorded.key_names
    first = export(fake, recorded.history_dsn, 2, ack=True, key_names=keys)  # a, b: acked
    export(fake, recorded.history_dsn, 2, ack=False, key_names=keys)  # c, resolve: committed
    fake.xdel(NAMES.history, *first)  # only the record has them now; "delivered": the tail's

    def keys_of(**args: str) -> list[tuple[str, str]]:
        return [(s["dedup_key"], s["action"]) for s in stories(**args)]

    assert keys_of() == [("a", "resolve"), ("c", "trigger"), ("b", "trigger"), ("a", "trigger")]
    [b] = stories(dedup_key="b")
    assert [s["step"] for s in b["steps"]] == ["accepted", "delivered"]  # once each
    assert b["state"] == "delivered" and b["key"] == "key-1" and b["source"] == "grafana"
    assert b["severity"] == "warning" and b["summary"] == "Replication SLOW on db2"
    assert keys_of(state="delivered") == [("b", "trigger")]  # the record says queued
    assert keys_of(state="queued") == [("a", "resolve"), ("a", "trigger")]
    assert keys_of(source="grafana") == [("b", "trigger")]
    assert keys_of(severity="warning") == [("b", "trigger")]
    assert keys_of(q="replication slow") == [("b", "trigger")]  # any case
    assert keys_of(q="%") == [] and keys_of(q="_") == []  # LIKE's signs are themselves
    assert keys_of(key="key-1") == [("a", "resolve"), ("b", "trigger"), ("a", "trigger")]
    assert keys_of(key="key-2") == []
    assert keys_of(payload_source="db1") == [("c", "trigger"), ("b", "trigger"),
                                             ("a", "trigger")]
    assert keys_of(until="2000-01-01T00:00:00Z") == []
    assert len(keys_of(since="1h", until="2099-01-01T00:00:00Z")) == 4
    assert keys_of(limit="2") == [("a", "resolve"), ("c", "trigger")]
    one = app.get(f"/api/v1/events/{b['id']}", headers=look)
    assert one.status_code == 200 and one.json == b


def test_payload_filters_need_the_record(api, tokens) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    answer = api.get("/api/v1/events", headers=look, query_string={"q": "disk", "key": "k"})
    assert answer.status_code == 400
    assert answer.json["errors"][0].startswith("q: searches the events' payloads")
    assert api.get("/api/v1/events", headers=look,
                   query_string={"key": "key-1", "until": "1h"}).status_code == 200


def test_record_down_is_a_503_with_retry_after(routed, fake, tokens, postgres_server) -> None:
    dsn = postgres_server.dsn("no_such_database")
    app = create_app(replace(routed, history_dsn=dsn), client=fake).test_client()
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    for path in ("/api/v1/events", "/api/v1/events/0123456789abcdef"):
        answer = app.get(path, headers=look)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "10"
        assert answer.json["errors"] == ["PostgreSQL: OperationalError"]
        assert "password" not in answer.get_data(as_text=True)
