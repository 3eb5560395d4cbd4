"""Shared fixtures: settings with generated keys, a fakeredis client, the Flask app."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.auth import digest, new_token
from relay.errors import ConfigError
from relay.keys import new_key as make_key
from relay.settings import Settings
from relay.stack.postgres import LocalPostgres, binaries
from relay.stack.processes import free_port
from tests.receivers import WebhookReceiver

__all__ = ["FAR", "UNIX", "csrf_of", "make_key", "sign_in", "trigger"]
FAR = {"REMOTE_ADDR": "10.1.2.3"}  # a client not on loopback (the dashboard's tests)
# waitress's peer for a request over a Unix socket: without X-Forwarded-For, the stack's
# own checks (may read /metrics and /readyz); with it, nginx's request for that client
UNIX = {"REMOTE_ADDR": "localhost"}

# Keys and routes files must be private (relay.keys.exposed): every file a test writes is.
os.umask(0o077)


@pytest.fixture
def keys() -> tuple[str, ...]:
    return (make_key(), make_key(), make_key())


@pytest.fixture
def settings(keys: tuple[str, ...], tmp_path: Path) -> Settings:
    path = tmp_path / "keys.txt"
    path.write_text("\n".join(keys) + "\n")
    return Settings(routing_keys=keys, keys_file=path, retry_base_s=0.01, lease_ttl_s=1,
                    connect_timeout_s=0.2, read_timeout_s=0.5, allow_anonymous=True)


@pytest.fixture
def fake() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.flushall()


@pytest.fixture
def client(settings: Settings, fake: fakeredis.FakeRedis) -> FlaskClient:
    return create_app(settings, client=fake).test_client()


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    """A webhook receiver on 127.0.0.1 (tests.receivers), closed after the test."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def tokens() -> dict[str, str]:
    return {"viewer": new_token()[0], "admin": new_token()[0], "source": new_token()[0]}


@pytest.fixture
def routed(settings: Settings, tmp_path: Path, tokens: dict[str, str]) -> Settings:
    """Settings with a routes file: a source, two routes and two operators."""
    path = tmp_path / "routes.yml"
    path.write_text(f"""
sources:
  - name: grafana
    api_keys: ["{digest(tokens['source'])}"]
routes:
  - name: noisy
    match: ['summary=~"noise.*"']
    drop: true
  - name: db
    match: ['source="db1"']
    keys: [key-1]
operators:
  - name: vera
    role: viewer
    tokens: ["{digest(tokens['viewer'])}"]
  - name: ada
    role: admin
    tokens: ["{digest(tokens['admin'])}"]
""")
    return replace(settings, routes_file=path, key_names=("key-1", "key-2", "key-3"))


@pytest.fixture
def api(routed: Settings, fake: fakeredis.FakeRedis) -> FlaskClient:
    return create_app(routed, client=fake).test_client()


def one_channel(tmp_path: Path, key: str, channel: str) -> Settings:
    """Settings of one key (named db) whose one route tells one channel (``channel``: a
    YAML flow mapping named by its ``name``) of every event; anonymous senders allowed."""
    name = channel.split("name:", 1)[1].split(",", 1)[0].strip()
    (tmp_path / "keys.txt").write_text(f"{key} db\n")
    (tmp_path / "routes.yml").write_text(
        f"channels:\n  - {channel}\nroutes:\n  - {{name: db, keys: [db], channels: [{name}]}}\n")
    return Settings.from_env({"RELAY_KEYS_FILE": str(tmp_path / "keys.txt"),
                              "RELAY_ROUTES_FILE": str(tmp_path / "routes.yml"),
                              "RELAY_ALLOW_ANONYMOUS": "true"})


def trigger(summary: str = "disk full on db1", **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_action": "trigger",
        "payload": {"summary": summary, "source": "db1", "severity": "critical"},
    }
    event.update(fields)
    return event


def csrf_of(html: bytes) -> str:
    """The CSRF token of a page's (first) form."""
    found = re.search(rb'name="csrf" value="([^"]*)"', html)
    assert found, html[:500]
    return found.group(1).decode()


def sign_in(client: FlaskClient, token: str, **kwargs: Any) -> Any:
    """Sign in to the dashboard as a browser does: the form, then its post."""
    form = client.get("/ui/sign-in", **kwargs)
    return client.post("/ui/sign-in", data={"token": token, "csrf": csrf_of(form.data)},
                       **kwargs)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL (Debian's package) on loopback for the whole run; skips where
    none can be found (scripts/test installs it as root)."""
    try:
        binaries()
    except ConfigError as exc:
        pytest.skip(str(exc))
    home = Path(tempfile.mkdtemp(prefix="pdr-pg-"))
    server = LocalPostgres(home, free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres_server: LocalPostgres) -> Iterator[str]:
    """The DSN of a database of this test's own, dropped after it."""
    import psycopg

    name = "t_" + secrets.token_hex(6)
    postgres_server.create_database(name)
    yield postgres_server.dsn(name)
    with psycopg.connect(postgres_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
