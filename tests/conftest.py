"""Shared fixtures: settings with generated keys, a fakeredis client, the Flask app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from flask.testing import FlaskClient

from relay.app import create_app
from relay.keys import new_key as make_key
from relay.settings import Settings

__all__ = ["make_key", "trigger"]

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


def trigger(summary: str = "disk full on db1", **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_action": "trigger",
        "payload": {"summary": summary, "source": "db1", "severity": "critical"},
    }
    event.update(fields)
    return event
