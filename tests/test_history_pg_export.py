"""``pd-relay history export`` on a real PostgreSQL: CSV and JSON lines, filters, a
server-side cursor, a private output file, spreadsheet formulas defused."""

from __future__ import annotations

import csv
import json
import stat
from dataclasses import replace

import fakeredis
import pytest

from relay.app import create_app
from relay.cli import _parser
from relay.commands import history_export
from relay.history import History
from relay.history.pg.connect import connect
from relay.history.search import Query
from relay.history.story import key_name
from relay.names import Names
from relay.settings import Settings
from tests.conftest import trigger
from tests.pg_rows import entries_of, migrated, write

NAMES = Names("pdr")


@pytest.fixture
def recorded(settings: Settings, pg_dsn: str) -> tuple[Settings, fakeredis.FakeRedis]:
    migrated(pg_dsn)
    fake = fakeredis.FakeRedis(decode_responses=True)
    recorded = replace(settings, history_dsn=pg_dsn, key_names=("db", "web", "ops"))
    web = create_app(recorded, client=fake).test_client()
    assert web.post("/v2/enqueue", json=trigger("=HYPERLINK(\"http://x\")",
                                                dedup_key="f")).status_code == 202
    assert web.post("/v2/enqueue", json=trigger("slow, \"quoted\"", dedup_key="w", payload={
        "summary": "slow, \"quoted\"", "source": "web1", "severity": "warning"})).status_code == 202
    [_, second] = fake.xrange(NAMES.history)
    event_id = second[1]["v"].split("\x1f")[1]
    History(fake, NAMES, recorded).note("delivered", 2, i=event_id, d="w", k="web", r="ok")
    write(pg_dsn, entries_of(fake, NAMES.history), recorded.key_names)
    return recorded, fake


def run(settings: Settings, *argv: str) -> int:
    return history_export.command(settings, _parser().parse_args(["history", "export", *argv]))


def test_csv_to_a_private_file_oldest_first(recorded, tmp_path, capsys) -> None:
    settings, _ = recorded
    out = tmp_path / "audit.csv"
    assert run(settings, "--since", "7d", "--format", "csv", "--output", str(out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with out.open(newline="") as lines:
        table = list(csv.DictReader(lines))
    assert [r["dedup_key"] for r in table] == ["f", "w"]
    assert table[0]["summary"] == "'=HYPERLINK(\"http://x\")"  # not a formula
    assert table[1]["summary"] == "slow, \"quoted\"" and table[1]["state"] == "delivered"
    assert table[1]["severity"] == "warning" and table[1]["payload_source"] == "web1"
    _, fake = recorded
    [_, (_, accepted)] = fake.xrange(NAMES.history, count=2)
    slot = int(accepted["v"].split("\x1f")[0])  # the key the relay chose (random keys)
    assert table[1]["source"] == "anonymous" and table[1]["key"] == key_name(
        settings.key_names, slot)
    assert table[1]["accepted_at"].endswith("Z") and "T" in table[1]["accepted_at"]
    assert "2 event(s) exported" in capsys.readouterr().err


def test_jsonl_with_payload_and_steps_and_filters(recorded, capsys) -> None:
    settings, _ = recorded
    assert run(settings, "--since", "1h", "--format", "jsonl", "--severity", "warning") == 0
    [line] = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert event["dedup_key"] == "w" and event["payload"]["e"]["payload"]["source"] == "web1"
    assert "routing_key" not in json.dumps(event["payload"])
    assert [s["step"] for s in event["steps"]] == ["accepted", "delivered"]
    assert event["steps"][1]["detail"]["r"] == "ok" and event["steps"][1]["detail"]["k"] == "web"
    assert event["steps"][1]["at"].endswith("+00:00")  # in UTC, whatever the server's zone
    assert run(settings, "--until", "2000-01-01T00:00:00Z", "--format", "jsonl") == 0
    assert capsys.readouterr().out == ""
    assert run(settings, "--q", "HYPERLINK", "--format", "jsonl") == 0
    assert [json.loads(x)["dedup_key"] for x in capsys.readouterr().out.splitlines()] == ["f"]
    assert run(settings, "--since", "yesterday") == 2
    assert "since: want a time" in capsys.readouterr().err


def test_rows_come_through_a_server_side_cursor(recorded) -> None:
    settings, _ = recorded
    with connect(settings.history_dsn, autocommit=True) as conn:
        found = history_export.rows(conn, Query(limit=0))
        assert next(found)["dedup_key"] == "f"
        cursors = [r[0] for r in conn.execute("SELECT name FROM pg_cursors")]
        assert cursors == ["pd_relay_export"]
        assert [r["dedup_key"] for r in found] == ["w"]


def test_no_record_or_record_down(settings, postgres_server, capsys) -> None:
    assert run(settings) == 2
    assert "RELAY_HISTORY_DSN" in capsys.readouterr().err
    down = replace(settings, history_dsn=postgres_server.dsn("no_such_database"))
    assert run(down) == 1
    err = capsys.readouterr().err
    assert "PostgreSQL at postgresql://pd_relay:***@" in err
    assert postgres_server.password_file.read_text().strip() not in err
