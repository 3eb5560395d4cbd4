"""End to end at the edge (issue 28): a real ingress behind nginx takes heartbeat pings
as a cron line's curl sends them (GET and HEAD with the check's ping token in the path,
which never reaches nginx's access log nor the relay's), by a source's API key, and a
Watchdog alert through /adapters/alertmanager counted as a ping with no event stored;
the ingress keeps its liveness mark in Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
import requests

from relay.auth import new_token
from relay.heartbeats.body import stored_size
from relay.heartbeats.model import Check
from relay.heartbeats.store import Heartbeats
from relay.names import Names
from relay.stack.processes import wait_until

CURL = shutil.which("curl")
NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
WATCHDOG = {"version": "4", "status": "firing", "receiver": "relay", "alerts": [
    {"status": "firing", "labels": {"alertname": "Watchdog", "severity": "none"},
     "annotations": {}, "startsAt": "2026-12-05T08:00:00Z",
     "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "wd"}]}


@pytest.mark.skipif(NGINX is None, reason="needs nginx")
def test_pings_through_nginx_by_token_key_and_watchdog(make_stack, tmp_path: Path) -> None:
    api_key, digest = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
sources:
  - name: cron
    api_keys: ["{digest}"]
heartbeats:
  - {{name: backup, period: 1h, grace: 5m, keys: [key-1], sources: [cron]}}
  - name: prometheus
    period: 2m
    keys: [key-2]
    watchdog: ['alertname="Watchdog"']
""")
    routes.chmod(0o600)
    stack = make_stack(keys=2, RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(routes))
    client = redis.Redis.from_url(stack.env["RELAY_REDIS_URL"], decode_responses=True)
    names = Names()
    heartbeats = Heartbeats(client, names)
    made = stack.cli("heartbeat", "token", "backup")
    assert made.returncode == 0, made.stderr
    token = next(word for word in made.stdout.split() if word.startswith("pdh_"))
    node = stack.start_ingress()
    url = stack.start_nginx([node.removeprefix("http://")])

    # the liveness mark: set by the ingress on Redis's time, with a TTL
    wait_until(lambda: client.exists(names.heartbeat_ingress), 10, "the ingress's mark")
    assert 0 < client.pttl(names.heartbeat_ingress) <= 15_000

    # curl -fsS -m 10 --retry 5 -o /dev/null https://relay/ping/<token>/backup
    got = requests.get(f"{url}/ping/{token}/backup", timeout=5)
    assert got.status_code == 200, got.text
    assert got.json()["check"] == "backup" and got.json()["state"] == "up"
    assert got.headers["Ping-Body-Limit"] == "10000"
    head = requests.head(f"{url}/ping/{token}/backup/start", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Ping-Body-Limit"] == "10000"
    body = b"backup failed: disk full\n" * 1000  # 25,000 bytes: 10,000 kept as stored
    failed = requests.post(f"{url}/ping/{token}/backup/1", data=body, timeout=5)
    assert failed.status_code == 200 and failed.json()["state"] == "down"
    last = heartbeats.recent_pings("backup", 1)[0]
    # (a newline is two bytes in the stored JSON: about 9,600 bytes of these lines kept)
    assert last["exit_status"] == 1 and body.decode().startswith(last["body"])
    assert 9_990 < stored_size(last["body"]) <= 10_000
    # the README's cron line, as cron's /bin/sh runs it, with curl
    if CURL is not None:
        line = ("out=$(sh -c 'echo backing up; echo disk full; exit 3' 2>&1); rc=$?; "
                'echo "$out" | tail -c 10000 | curl -fsS -m 10 --retry 5 --data-binary @- '
                f"{url}/ping/{token}/backup/$rc >/dev/null")
        subprocess.run(["/bin/sh", "-c", line], check=True, timeout=30)
        last = heartbeats.recent_pings("backup", 1)[0]
        assert (last["exit_status"], last["signal"]) == (3, "fail")
        assert last["body"] == "backing up\ndisk full\n"
        curled = subprocess.run(["curl", "-fsS", "-m", "10", "-I", f"{url}/ping/{token}/backup"],
                                capture_output=True, text=True, timeout=30, check=True)
        assert "ping-body-limit: 10000" in curled.stdout.lower()
    # a source's API key; a wrong token (logged by the relay, masked)
    keyed = requests.post(f"{url}/ping/backup", headers={"X-API-Key": api_key}, timeout=5)
    assert keyed.status_code == 200 and keyed.json()["state"] == "up"
    wrong = requests.get(f"{url}/ping/{token[:-1]}X/backup", timeout=5)
    assert wrong.status_code == 401 and wrong.json()["status"] == "unauthorized"
    assert requests.get(f"{url}/ping/backup", timeout=5).status_code == 401

    # a check added at run time takes pings within the ingress's next read of the checks
    added = stack.cli("heartbeat", "add", "nightly", "--period", "1d", "--keys", "key-1")
    assert added.returncode == 0, added.stderr
    wait_until(lambda: requests.post(f"{url}/ping/nightly", headers={"X-API-Key": api_key},
                                     timeout=5).status_code == 200, 10, "the run-time check")

    # the Watchdog: a ping of its check, and no event
    watchdog = requests.post(f"{url}/adapters/alertmanager", json=WATCHDOG, timeout=5,
                             headers={"Authorization": f"Bearer {api_key}"})
    assert watchdog.status_code == 202 and watchdog.json()["pings"] == 1, watchdog.text
    [state] = heartbeats.states([Check("prometheus", grace_s=300, period_s=120)])
    assert state.state == "up" and state.last_signal == "success"
    assert [name for name in client.scan_iter(f"{names.prefix}:queue:*")
            if client.llen(name)] == []

    wait_until(lambda: "/ping/***/backup" in stack.logs_text(), 10, "the access lines")
    wait_until(lambda: "from ping-token" in stack.logs_text(), 10, "the relay's refusal")
    logs = stack.logs_text()
    assert token not in logs and token[:-1] not in logs
    assert "/ping/***/backup/start" in logs and "/ping/***/backup/1" in logs

