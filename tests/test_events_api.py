"""The history API (``/api/v1/events``) and who may use it, through the Flask app on
fakeredis (the accepted steps come from ENQUEUE's Lua)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from relay.app import create_app
from relay.errors import BadQuery, ConfigError
from relay.history import History
from relay.names import Names
from relay.routes.config import load
from relay.settings import Settings
from relay.ui.api import query_of
from tests.conftest import FAR, trigger

NAMES = Names("pdr")


def test_search_by_each_filter_newest_first(api, fake, tokens) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    source = {"X-API-Key": tokens["source"]}
    assert api.post("/v2/enqueue", json=trigger(dedup_key="a")).status_code == 202
    assert api.post("/v2/enqueue", json=trigger(dedup_key="b"), headers=source).status_code == 202
    assert api.post("/v2/enqueue", json=trigger("noise 1", dedup_key="c")).status_code == 202
    assert api.post("/v2/enqueue", json={"event_action": "resolve",
                                         "dedup_key": "a"}).status_code == 202

    def keys(**args: str) -> list[tuple[str, str]]:
        answer = api.get("/api/v1/events", headers=look, query_string=args)
        assert answer.status_code == 200, answer.json
        return [(e["dedup_key"], e["action"]) for e in answer.json["events"]]

    assert keys() == [("a", "resolve"), ("c", "trigger"), ("b", "trigger"), ("a", "trigger")]
    assert keys(dedup_key="a") == [("a", "resolve"), ("a", "trigger")]
    assert keys(source="grafana") == [("b", "trigger")]
    assert keys(route="db") == [("b", "trigger"), ("a", "trigger")]
    assert keys(state="dropped") == [("c", "trigger")]
    assert keys(limit="2") == [("a", "resolve"), ("c", "trigger")]
    assert keys(since="2099-01-01T00:00:00Z") == []
    assert len(keys(since="1h")) == 4
    [story] = api.get("/api/v1/events", headers=look,
                      query_string={"dedup_key": "b"}).json["events"]
    assert story["key"] == "key-1" and story["route"] == "db" and story["state"] == "queued"
    assert story["steps"][0]["client"] == "127.0.0.1" and story["steps"][0]["source"] == "grafana"
    # delivered: the worker's step changes the state
    History(fake, NAMES, Settings()).note("delivered", 0, i=story["id"], d="b", k="key-1", r="ok")
    assert keys(state="delivered") == [("b", "trigger")]
    one = api.get(f"/api/v1/events/{story['id']}", headers=look)
    assert one.status_code == 200 and one.json["state"] == "delivered"
    assert [s["step"] for s in one.json["steps"]] == ["accepted", "delivered"]
    assert one.json["steps"][1]["reply"] == "ok"


def test_unknown_event_and_bad_queries(api, tokens) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    missing = api.get("/api/v1/events/0123456789abcdef", headers=look)
    assert missing.status_code == 404 and "no event" in missing.json["errors"][0]
    assert api.get("/api/v1/events/not-an-id", headers=look).status_code == 404
    bad = api.get("/api/v1/events", headers=look, query_string={
        "state": "lost", "limit": "0", "since": "yesterday", "colour": "red"})
    assert bad.status_code == 400 and bad.json["status"] == "invalid query"
    assert [e.split(":")[0] for e in bad.json["errors"]] == ["colour", "state", "limit", "since"]


def test_since_takes_a_time_or_an_age() -> None:
    now = 1_800_000_000.0
    assert query_of({"since": "15m"}, now).since_ms == (now - 900) * 1000
    assert query_of({"since": "2027-01-15T08:00:00Z"}, now).since_ms == 1_800_000_000_000
    with pytest.raises(BadQuery):
        query_of({"since": "15 minutes"}, now)


def test_who_may_look(api, tokens) -> None:
    assert api.get("/api/v1/events").status_code == 401  # loopback is nobody
    far = api.get("/api/v1/events", environ_base=FAR)
    assert far.status_code == 401 and far.json["status"] == "unauthorized"
    assert "WWW-Authenticate" in far.headers
    for role in ("viewer", "admin"):
        auth = {"Authorization": f"Bearer {tokens[role]}"}
        assert api.get("/api/v1/events", headers=auth, environ_base=FAR).status_code == 200
    # a source's API key sends events; it does not open the cockpit, even on loopback
    wrong = api.get("/api/v1/events", headers={"Authorization": f"Bearer {tokens['source']}"})
    assert wrong.status_code == 401 and "not one of this relay's operators" in \
        wrong.json["errors"][0]


def test_operators_are_checked_by_path(tmp_path: Path) -> None:
    path = tmp_path / "routes.yml"
    path.write_text("""
operators:
  - name: x
    role: root
    tokens: [secret]
  - name: y
    tokens: []
    colour: red
""")
    with pytest.raises(ConfigError) as found:
        load(path, ())
    problems = "\n".join(found.value.problems)
    assert "operators[0].role: want viewer or admin" in problems
    assert "operators[0].tokens[0]: want 'sha256:'" in problems
    assert "operators[1].tokens: want a list of token hashes" in problems
    assert "operators[1].colour: unknown field (want name, role, tokens)" in problems


def test_retention_and_the_cap_forget_stories(routed, fake, tokens) -> None:
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    capped = create_app(replace(routed, history_max_entries=100), client=fake).test_client()
    for n in range(300):
        assert capped.post("/v2/enqueue", json=trigger(dedup_key=f"k{n}")).status_code == 202
    assert fake.xlen(NAMES.history) <= 200  # MAXLEN ~: whole nodes of 100 go
    found = capped.get("/api/v1/events", headers=look,
                       query_string={"limit": "500"}).json["events"]
    assert found[0]["dedup_key"] == "k299" and len(found) == fake.xlen(NAMES.history)
    History(fake, NAMES, Settings()).trim(int(time.time() * 1000) + 1)
    assert capped.get("/api/v1/events", headers=look).json["events"] == []


def test_until_and_key_search_the_stream_too(api, fake, tokens) -> None:
    """Without the record: ``until`` (accepted before) and ``key`` (the key's name)."""
    look = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert api.post("/v2/enqueue", json=trigger(dedup_key="x", payload={
        "summary": "s", "source": "db1", "severity": "info"})).status_code == 202
    [(entry_id, _)] = fake.xrange(NAMES.history)
    ms = int(entry_id.split("-")[0])
    assert api.post("/v2/enqueue", json=trigger(dedup_key="y", payload={
        "summary": "s", "source": "web", "severity": "info"})).status_code == 202

    def keys(**args: str) -> list[str]:
        answer = api.get("/api/v1/events", headers=look, query_string=args)
        assert answer.status_code == 200, answer.json
        return [e["dedup_key"] for e in answer.json["events"]]

    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000 + 1)) + "Z"
    assert keys(until=iso) == []  # before, not at
    assert "x" in keys(until=later) and keys(dedup_key="x", until=later) == ["x"]
    found = api.get("/api/v1/events", headers=look).json["events"]
    by_key = {e["key"]: sorted(f["dedup_key"] for f in found if f["key"] == e["key"])
              for e in found}
    assert "x" in by_key["key-1"]  # route db: key-1
    for name, dedup_keys in by_key.items():
        assert sorted(keys(key=name)) == dedup_keys
    assert keys(key="no-such-key") == []
