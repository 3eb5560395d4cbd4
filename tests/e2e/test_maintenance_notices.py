"""End to end: maintenance notices, with real ingress, worker, channel-worker (RQ), Redis
and simulator processes and a stand-in chat server: a window added at run time is told
added, started and ended, each once and in that order, with the triggers it held back;
one expired early is told so; a route's channel hears only of the windows that could
hold its events."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from relay.stack.processes import wait_until
from tests.conftest import trigger
from tests.receivers import WebhookReceiver


def told(hooks: WebhookReceiver, path: str) -> list[tuple[str, str, Any]]:
    """(window, event, triggers held back) of each notice ``path`` took, in order."""
    return [(d["window"], d["event"], d.get("held")) for d in
            (body["notice"]["custom_details"] for body in hooks.taken(path))]


def test_a_window_is_told_added_started_ended_once_and_one_expired_early(
        make_stack, hooks: WebhookReceiver, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - name: team
    type: webhook
    url: {hooks.url}/team
    maintenance: true
  - name: web-chat
    type: webhook
    url: {hooks.url}/web
routes:
  - name: web
    match: ['source="web"']
    keys: [key-1]
    channels: [web-chat]
    maintenance: true
  - name: db
    keys: [key-1]
""")
    routes.chmod(0o600)
    stack = make_stack(keys=1, RELAY_ROUTES_FILE=str(routes))
    stack.start_simulator()
    stack.start_ingress()
    stack.start_worker(0)
    stack.start_channel_worker()

    added = stack.cli("maintenance", "add", "db-upgrade", "--match", 'source=~"db.*"',
                      "--start", "4s", "--end", "16s", "--comment", "pg 17")
    assert added.returncode == 0, added.stderr
    wait_until(lambda: told(hooks, "/team") == [("db-upgrade", "added", None)], 15,
               "the team channel to hear the window was added")
    text = hooks.taken("/team")[0]["text"].split("\n")[0]
    assert re.fullmatch(r'🔧 MAINTENANCE \[info\] Maintenance window db-upgrade added: will '
                        r'hold triggers matching source=~"db\.\*" from \d\d:\d\d(:\d\d)? UTC to '
                        r'\d\d:\d\d(:\d\d)? UTC \(pg 17\)', text), text
    wait_until(lambda: len(told(hooks, "/team")) == 2, 15, "the window to start")
    db = trigger(payload={"summary": "replica lag", "source": "db-1", "severity": "error"})
    for _ in range(2):
        reply = stack.post(db)
        assert reply.json()["message"] == "Suppressed by maintenance window db-upgrade"
    wait_until(lambda: len(told(hooks, "/team")) == 3, 30, "the window to end")
    assert told(hooks, "/team") == [("db-upgrade", "added", None),
                                    ("db-upgrade", "started", None),
                                    ("db-upgrade", "ended", 2)]
    assert hooks.taken("/team")[2]["text"].split("\n")[0] == (
        "🔧 MAINTENANCE [info] Maintenance window db-upgrade ended: it held back 2 triggers "
        "(pg 17)")
    assert stack.post(db).json()["message"] == "Event queued"  # over

    # a window for every trigger, in force at once, expired early
    added = stack.cli("maintenance", "add", "freeze", "--end", "1h")
    assert added.returncode == 0, added.stderr
    window_id = added.stdout.split()[2]
    wait_until(lambda: len(told(hooks, "/team")) == 4, 15, "the freeze to be told")
    assert stack.cli("maintenance", "expire", window_id).returncode == 0
    wait_until(lambda: len(told(hooks, "/team")) == 5, 20, "the expiry to be told")
    assert told(hooks, "/team")[3:] == [("freeze", "started", None),
                                        ("freeze", "expired early", 0)]
    assert "expired early (it was to end at" in hooks.taken("/team")[4]["text"]
    # the web route's channel: the freeze could hold its events, db-upgrade could not (its
    # jobs are its own: it may hear of the expiry a moment after the team channel)
    wait_until(lambda: len(told(hooks, "/web")) >= 2, 20, "the web channel to hear the expiry")
    assert told(hooks, "/web") == [("freeze", "started", None), ("freeze", "expired early", 0)]
    # each told once: nothing more came while the second window was told
    assert len(hooks.taken("/team")) == 5
