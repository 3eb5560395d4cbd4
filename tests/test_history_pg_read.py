"""The history API reading the record in PostgreSQL (a real server: the ``pg_dsn``
fixture) and the stream's tail together: no gap, no duplicate, the new filters."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient
from psycopg.conninfo import conninfo_to_dict

from relay.app import create_app
from relay.history import History
from relay.names import Names
from relay.settings import Settings
from relay.stack.processes import free_port
from tests.conftest import sign_in, trigger
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
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert answer.json["errors"] == ["the record in PostgreSQL does not answer"]
        secret = postgres_server.password_file.read_text().strip()
        assert secret not in answer.get_data(as_text=True)


def unnamed(body: str, dsn: str) -> None:
    """``body`` names nothing of the server at ``dsn``: its host, port, user, database."""
    given = conninfo_to_dict(dsn)
    for part in ("host", "port", "user", "dbname"):
        assert str(given[part]) not in body, (part, body)


@pytest.mark.parametrize("which", ["down", "not migrated"])
def test_a_503_names_nothing_of_the_server(routed, fake, tokens, pg_dsn, which) -> None:
    """Any API caller or dashboard viewer reads the 503: it says the record does not
    answer, never where it is (the operator's log does, masked)."""
    given = conninfo_to_dict(pg_dsn)  # down: the same names, a port nothing listens on
    dsn = (f"postgresql://{given['user']}:{given['password']}@127.0.0.1:{free_port()}/"
           f"{given['dbname']}") if which == "down" else pg_dsn
    app = create_app(replace(routed, history_dsn=dsn), client=fake).test_client()
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    for path in ("/api/v1/events", "/api/v1/events/0123456789abcdef"):
        answer = app.get(path, headers=look)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        unnamed(answer.get_data(as_text=True), dsn)
    assert sign_in(app, tokens["viewer"]).status_code == 303
    for path in ("/ui/events", "/ui/events/0123456789abcdef"):
        page = app.get(path)
        assert page.status_code == 503 and b"PostgreSQL does not answer" in page.data
        unnamed(page.get_data(as_text=True), dsn)


def test_trace_reads_the_record_and_the_tail(app, fake, recorded, monkeypatch, capsys) -> None:
    from relay.commands import trace

    monkeypatch.setattr(trace, "connect", lambda _settings: fake)
    for action in ("trigger", "acknowledge", "resolve"):
        answer = app.post("/v2/enqueue", json=trigger(dedup_key="inc", event_action=action))
        assert answer.status_code == 202
    first = export(fake, recorded.history_dsn, 1, ack=True, key_names=recorded.key_names)
    export(fake, recorded.history_dsn, 1, ack=False, key_names=recorded.key_names)
    fake.xdel(NAMES.history, *first)
    args = type("Args", (), {"dedup_key": "inc", "json": True})()
    assert trace.command(recorded, args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["action"] for s in shown] == ["trigger", "acknowledge", "resolve"]  # oldest first
    assert [len(s["steps"]) for s in shown] == [1, 1, 1]
    args.json = False
    assert trace.command(recorded, args) == 0
    out = capsys.readouterr().out
    assert "3 event(s)" in out and "critical: disk full on db1" in out


def test_trace_says_the_record_is_down_and_shows_the_stream(api, fake, routed, monkeypatch,
                                                            capsys, postgres_server) -> None:
    from relay.commands import trace

    monkeypatch.setattr(trace, "connect", lambda _settings: fake)
    assert api.post("/v2/enqueue", json=trigger(dedup_key="inc")).status_code == 202
    down = replace(routed, history_dsn=postgres_server.dsn("no_such_database"))
    args = type("Args", (), {"dedup_key": "inc", "json": False})()
    assert trace.command(down, args) == 0
    out, err = capsys.readouterr()
    assert "1 event(s)" in out
    assert "record in PostgreSQL does not answer (PostgreSQL at postgresql://" in err


def test_the_dashboard_searches_the_record(app, fake, recorded, tokens) -> None:
    assert app.post("/v2/enqueue", json=trigger("Cache MISS storm", dedup_key="p1",
                                                 )).status_code == 202
    assert app.post("/v2/enqueue", json=trigger(dedup_key="p2")).status_code == 202
    export(fake, recorded.history_dsn, 1, ack=True, key_names=recorded.key_names)
    fake.xtrim(NAMES.history, maxlen=1, approximate=False)  # p1: only in the record
    assert sign_in(app, tokens["viewer"]).status_code == 303
    found = app.get("/ui/events?q=miss+storm&severity=critical&until=2099-01-01T00:00Z")
    assert found.status_code == 200 and b"Cache MISS storm" in found.data
    # as the table's cells: a bare b"p2" may be found in the page's random tokens
    assert b"<td>p1</td>" in found.data and b"<td>p2</td>" not in found.data
    assert b'name="q"' in found.data
    [event_id] = [s["id"] for s in app.get("/api/v1/events?dedup_key=p1").json["events"]]
    page = app.get(f"/ui/events/{event_id}")
    assert page.status_code == 200 and b"<dd>Cache MISS storm</dd>" in page.data


def test_the_dashboard_says_the_record_is_down(routed, fake, tokens, postgres_server) -> None:
    dsn = postgres_server.dsn("no_such_database")
    app = create_app(replace(routed, history_dsn=dsn), client=fake).test_client()
    assert sign_in(app, tokens["viewer"]).status_code == 303
    for path in ("/ui/events", "/ui/events/0123456789abcdef"):
        page = app.get(path)
        assert page.status_code == 503 and page.headers["Retry-After"] == "5"
        assert b"PostgreSQL does not answer" in page.data
    assert app.get("/ui/").status_code == 200  # the rest of the dashboard is unaffected


def test_a_story_whose_start_is_lost_keeps_its_recorded_steps(app, fake, recorded) -> None:
    """Its accepted step trimmed before any export; an attempt exported, the delivery
    still in the tail: the search and trace show both (found through the tail's id)."""
    from relay.history.pg.exporter import Exporter, Tuning
    from relay.history.pg.stories import Finder
    from relay.history.search import Query

    assert app.post("/v2/enqueue", json=trigger(dedup_key="lost")).status_code == 202
    [(_, fields)] = fake.xrange(NAMES.history)
    event_id = fields["v"].split("\x1f")[1]
    history = History(fake, NAMES, recorded)
    history.note("attempt", 1, i=event_id, d="lost", r="r1")
    fake.xtrim(NAMES.history, maxlen=1, approximate=False)  # the accepted step: lost
    exporter = Exporter(fake, recorded, "x", Tuning(block_ms=1))
    assert exporter.turn() == 1
    exporter.close()
    history.note("delivered", 1, i=event_id, d="lost", r="r2")
    finder = Finder(recorded, fake)
    for query in (Query(limit=0), Query(dedup_key="lost", limit=0),
                  Query(event_id=event_id, limit=1)):
        [story] = finder.search(query)
        assert [(s["step"], s["r"]) for s in story.steps] == [("attempt", "r1"),
                                                             ("delivered", "r2")], query


def test_a_record_not_migrated_says_what_to_do(routed, fake, tokens, pg_dsn,
                                               caplog) -> None:
    app = create_app(replace(routed, history_dsn=pg_dsn), client=fake).test_client()
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    answer = app.get("/api/v1/events", headers=look)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json["errors"] == ["the record in PostgreSQL does not answer"]
    assert "run `pd-relay history migrate`" in caplog.text  # the operator's log says


def test_trace_since(app, fake, recorded, monkeypatch, capsys) -> None:
    from relay.cli import _parser
    from relay.commands import trace

    monkeypatch.setattr(trace, "connect", lambda _settings: fake)
    assert app.post("/v2/enqueue", json=trigger(dedup_key="inc")).status_code == 202
    export(fake, recorded.history_dsn, 1, ack=True, key_names=recorded.key_names)
    fake.xtrim(NAMES.history, maxlen=0, approximate=False)
    for when, status in (("1h", 0), ("2099-01-01T00:00:00Z", 1), ("soon", 2)):
        args = _parser().parse_args(["trace", "inc", "--since", when])
        assert trace.command(recorded, args) == status, when
    out, err = capsys.readouterr()
    assert out.count("1 event(s)") == 1 and "--since: want a time" in err


def test_a_tail_too_long_to_read_whole_is_said_not_a_silent_gap(
        app, fake, recorded, tokens, monkeypatch, capsys) -> None:
    """The stream's tail (not exported yet) is read up to ``TAIL_MOST`` entries, the
    newest: when it holds more, the API's answer, the Events page and trace say the
    answer may miss events, and say nothing when it was read whole."""
    from relay.commands import trace
    from relay.history.pg import stories

    for n in range(5):
        assert app.post("/v2/enqueue", json=trigger(dedup_key=f"t{n}")).status_code == 202
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    monkeypatch.setattr(stories, "TAIL_MOST", 5)  # the tail: 5 entries, read whole
    answer = app.get("/api/v1/events", headers=look).json
    assert answer["count"] == 5 and answer["incomplete"] is None
    monkeypatch.setattr(stories, "TAIL_MOST", 3)
    answer = app.get("/api/v1/events", headers=look).json
    assert answer["count"] == 3 and "only its newest 3 entries" in answer["incomplete"]
    assert sign_in(app, tokens["viewer"]).status_code == 303
    assert b"only its newest 3 entries" in app.get("/ui/events").data
    monkeypatch.setattr(trace, "connect", lambda _settings: fake)
    args = type("Args", (), {"dedup_key": "t4", "json": True})()
    assert trace.command(recorded, args) == 0
    assert "only its newest 3 entries" in capsys.readouterr().err
