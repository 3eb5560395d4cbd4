"""The history's readers against what a client may send and what PostgreSQL may do
(a real server: the ``pg_dsn`` fixture): odd parameters are a 400 or an answer, never a
5xx; a restarted PostgreSQL is searched again at once; a story is the same whether its
steps were exported yet or not."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from relay.app import create_app
from tests.conftest import trigger
from tests.pg_rows import migrated
from tests.test_history_pg_read import NAMES, app, export, recorded

__all__ = ["app", "recorded"]  # fixtures, shared with the reading tests




@pytest.mark.parametrize("args", [
    {"q": "disk\x00full"}, {"dedup_key": "a\x00"}, {"source": "\x00"}, {"key": "k\x00"},
    {"severity": "\x00"}, {"route": "\x00"}, {"payload_source": "\x00"},
], ids=lambda args: next(iter(args)))
def test_a_nul_in_a_filter_is_a_400_not_a_503(app, tokens, args) -> None:
    """PostgreSQL's text holds no NUL: psycopg refuses the value before sending it, which
    is the client's doing, not PostgreSQL's (a 503 would have it retried forever)."""
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert app.post("/v2/enqueue", json=trigger(dedup_key="a")).status_code == 202
    answer = app.get("/api/v1/events", headers=look, query_string=args)
    assert answer.status_code == 400, answer.json
    [why] = answer.json["errors"]
    assert why.startswith(next(iter(args)) + ":") and "NUL" in why


@pytest.mark.parametrize("args", [
    {"since": "9999-12-31T23:59:59-14:00"}, {"until": "9999-12-31T23:59:59-14:00"},
    {"since": "1h", "until": "9999-12-31T23:59:59-12:00"},
], ids=str)
def test_a_time_past_year_9999_in_utc_is_answered(app, tokens, args) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert app.post("/v2/enqueue", json=trigger(dedup_key="a")).status_code == 202
    answer = app.get("/api/v1/events", headers=look, query_string=args)
    assert answer.status_code == 200, answer.json
    assert answer.json["count"] == (0 if "since" in args and args["since"] != "1h" else 1)


@pytest.mark.parametrize("limit", ["\u00b2", "\u2460", "0x10", " 5"])
def test_a_limit_of_other_digits_is_a_400(app, tokens, limit) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    answer = app.get("/api/v1/events", headers=look, query_string={"limit": limit})
    assert answer.status_code == 400, answer.json
    assert answer.json["errors"][0].startswith("limit:")


def test_a_restarted_postgresql_is_searched_at_once(app, tokens, recorded) -> None:
    """The connections kept between searches died with their server processes (a restart,
    a failover, an idle timeout): the next search takes a new one, not a 503."""
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert app.post("/v2/enqueue", json=trigger(dedup_key="a")).status_code == 202
    assert app.get("/api/v1/events", headers=look).status_code == 200
    with psycopg.connect(recorded.history_dsn, autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                              ).fetchone()
    assert ended is not None and ended[0] >= 1  # the search's kept connection
    for _ in range(3):
        answer = app.get("/api/v1/events", headers=look)
        assert answer.status_code == 200, answer.json
        assert answer.json["count"] == 1


def test_a_story_is_whole_before_until_whether_exported_or_in_the_tail(app, fake, recorded,
                                                                        tokens) -> None:
    """``until`` bounds when events were accepted, not their stories: A's delivery was
    exported, B's is still in the stream's tail; both were delivered after ``until``, and
    both say so (B was said "queued": the tail was read only up to ``until``)."""
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    for key in ("A", "B"):
        assert app.post("/v2/enqueue", json=trigger(dedup_key=key)).status_code == 202
    accepted = {s["dedup_key"]: s["id"] for s in
                app.get("/api/v1/events", headers=look).json["events"]}
    [(last, _)] = fake.xrevrange(NAMES.history, count=1)
    later_ms = int(last.split("-")[0]) + 10_000
    for n, key in enumerate(("A", "B")):
        fake.xadd(NAMES.history, {"s": "delivered", "k": 1, "x": json.dumps(
            {"i": accepted[key], "d": key, "r": "ok"})}, id=f"{later_ms}-{n}")
    export(fake, recorded.history_dsn, 3, ack=True, key_names=recorded.key_names)
    until = datetime.fromtimestamp((later_ms - 5_000) / 1000, UTC).isoformat()
    for args in ({"until": until}, {"until": until, "state": "delivered"}):
        found = app.get("/api/v1/events", headers=look, query_string=args).json["events"]
        assert {s["dedup_key"]: s["state"] for s in found} == {"A": "delivered",
                                                               "B": "delivered"}, args
    found = app.get("/api/v1/events", headers=look,
                    query_string={"until": until, "state": "queued"}).json["events"]
    assert found == []


@pytest.mark.parametrize("q", ["über", "ÄRGER", "ärger über", "DISK", "a\\b", "50%", "x_y"])
def test_q_finds_the_same_before_and_after_export(app, fake, recorded, tokens, q) -> None:
    """Whether ``q`` is in a summary is PostgreSQL's to say (its ILIKE follows the
    database's locale: a C locale folds no case beyond ASCII) for the events in the tail
    too, or an event found while in the tail was gone from the search once exported."""
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    summaries = ["ÄRGER Über alles", "disk full on a\\b", "50% x_y done", "plain"]
    for n, summary in enumerate(summaries):
        answer = app.post("/v2/enqueue", json=trigger(summary, dedup_key=f"k{n}"))
        assert answer.status_code == 202

    def found() -> list[str]:
        answer = app.get("/api/v1/events", headers=look, query_string={"q": q})
        assert answer.status_code == 200, answer.json
        return sorted(s["dedup_key"] for s in answer.json["events"])

    in_tail = found()
    export(fake, recorded.history_dsn, len(summaries), ack=True, key_names=recorded.key_names)
    fake.xtrim(NAMES.history, maxlen=0, approximate=False)  # only the record has them now
    assert found() == in_tail
    if q.isascii():
        assert in_tail != []  # any case, LIKE's signs as themselves


def test_a_page_reads_a_page_of_the_record_while_the_export_lags(app, fake, recorded, tokens,
                                                                   monkeypatch) -> None:
    """Events in the stream's tail can change only their state: without ?state= a page
    needs a page of the record's events (it read one more per event in the tail, and
    their steps: the whole lag's worth at each page, when PostgreSQL is slow already)."""
    from relay.history.pg import reader

    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    for n in range(30):
        assert app.post("/v2/enqueue", json=trigger(dedup_key=f"old{n}")).status_code == 202
    export(fake, recorded.history_dsn, 30, ack=True, key_names=recorded.key_names)
    for n in range(30):  # the export lags: these are only in the tail
        assert app.post("/v2/enqueue", json=trigger(dedup_key=f"new{n}")).status_code == 202
    read: list[int] = []
    events = reader.events

    def counted(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        found = events(*args, **kwargs)
        read.append(len(found))
        return found

    monkeypatch.setattr(reader, "events", counted)
    answer = app.get("/api/v1/events", headers=look, query_string={"limit": "5"})
    assert [s["dedup_key"] for s in answer.json["events"]] == [f"new{n}" for n in
                                                              range(29, 24, -1)]
    assert read == [5]
    answer = app.get("/api/v1/events", headers=look, query_string={"limit": "35"})
    assert [s["dedup_key"] for s in answer.json["events"]][30:] == [f"old{n}" for n in
                                                                   range(29, 24, -1)]
    assert read[-1] == 30  # all the record has: 35 asked


def test_a_slow_postgresql_holds_at_most_half_the_threads(routed, fake, tokens, pg_dsn,
                                                          monkeypatch) -> None:
    """The history API shares the ingress's threads with the events: PostgreSQL not
    answering (a firewall dropping packets: each connect waits its 5 s), searches may hold
    at most half of them; the rest answer 503 at once and leave the others to the events
    (every thread waited on PostgreSQL, and a dashboard and a polling script starved
    ingest)."""
    import threading

    from relay.history.pg.reader import Record
    from relay.stack.processes import wait_until

    migrated(pg_dsn)
    settings = replace(routed, history_dsn=pg_dsn, threads=4)
    web = create_app(settings, client=fake)
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    release, waiting = threading.Event(), []
    connect = Record.connect

    def blackholed(self: Record) -> Any:
        waiting.append(1)
        release.wait(30)
        return connect(self)

    monkeypatch.setattr(Record, "connect", blackholed)
    answers: list[int] = []

    def search() -> None:
        answers.append(web.test_client().get("/api/v1/events", headers=look).status_code)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(answers) >= 2, 10, "two searches refused at once")
        assert (len(waiting), sorted(answers)) == (2, [503, 503])
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert sorted(answers) == [200, 200, 503, 503]
    assert web.test_client().post("/v2/enqueue", json=trigger()).status_code == 202
