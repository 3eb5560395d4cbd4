"""A record in PostgreSQL (RELAY_HISTORY_DSN set) whose exporter never ran (forgotten in a
deployment, crashing before it made its group): every entry the stream holds is behind the
record, so the lag is the oldest entry's age, shown by /metrics, the self-check's alarm and
`status`, not left unsaid until the caps trim the steps away."""

from __future__ import annotations

import json

from relay.history.pg import report
from relay.housekeeping import selfcheck
from tests.conftest import UNIX
from tests.test_history_watch import NAMES, history_ids, setup  # noqa: F401 (a fixture)


def entry_at(fake, ms: int) -> None:
    fake.xadd(NAMES.history, {"s": "attempt", "k": "1", "x": "{}"}, id=f"{ms}-0")


def test_no_exporter_ever_the_lag_is_the_oldest_entrys_age(setup, fake) -> None:  # noqa: F811
    settings, routes = setup
    now = 1_000_000.0
    got = report.read(fake, NAMES, settings, int(now * 1000))
    assert got is not None and got.lag_s is None  # nothing in the stream: nothing behind
    assert "no exporter has run yet" in got.line()
    entry_at(fake, int((now - 130) * 1000))
    got = report.read(fake, NAMES, settings, int(now * 1000))
    assert got is not None and got.lag_s == 130.0
    assert "lag 130.0 s" in got.line() and "no exporter has run yet" in got.line()
    found = selfcheck.conditions(fake, NAMES, settings, routes, now=now)
    assert history_ids(found) == ["history-lag"]


def test_no_exporter_ever_the_metric_says_the_lag(setup, fake) -> None:  # noqa: F811
    from relay.app import create_app

    settings, _ = setup
    entry_at(fake, 1_000)
    client = create_app(settings, fake).test_client()
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    [lag] = [line for line in text.splitlines()
             if line.startswith("pd_relay_history_export_lag_seconds ")]
    assert float(lag.split(" ")[1]) > 1000  # the entry is from 1970


def test_status_json_says_no_exporter_ran(setup, fake, monkeypatch, capsys) -> None:  # noqa: F811
    from relay.commands import operations

    settings, _ = setup
    monkeypatch.setattr(operations, "connect", lambda _settings: fake)
    entry_at(fake, 1_000)
    operations.status(settings, type("Args", (), {"json": True, "watch": 0})())
    shown = json.loads(capsys.readouterr().out)["history"]
    assert shown["lag_seconds"] > 1000 and shown["exporter_ran"] is False
