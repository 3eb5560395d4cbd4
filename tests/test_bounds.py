"""Issue 23: what a sender can make the ingress spend, and what it can make it fail on.
Refusals before the body is parsed, depth and size bounds, bounded matcher input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import relay.app
from relay.app import create_app
from relay.auth import new_token
from relay.settings import Settings
from tests.conftest import make_key, trigger

# 512 KB of events, malformed only at its very end: parsing it costs the whole parse
MALFORMED_512K = (b"[" + b",".join([json.dumps(trigger()).encode()] * 5000))[:511_000] + b"\x00"


@pytest.fixture
def guarded(tmp_path: Path, keys: tuple[str, ...], fake) -> tuple[Any, str]:
    """An app that takes events only with an API key or one of its routing keys."""
    token, token_hash = new_token()
    routes = tmp_path / "routes.yml"
    routes.write_text(f'sources:\n  - name: ci\n    api_keys: ["{token_hash}"]\n')
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    settings = Settings.from_env({"RELAY_KEYS_FILE": str(keys_file),
                                  "RELAY_ROUTES_FILE": str(routes)})
    return create_app(settings, client=fake).test_client(), token


@pytest.fixture
def parses(monkeypatch) -> list[int]:
    """Counts the ingress's calls of its body parser."""
    calls: list[int] = []
    original = relay.app.parse_body

    def counted(*args: Any) -> Any:
        calls.append(len(args[-1]))
        return original(*args)

    monkeypatch.setattr(relay.app, "parse_body", counted)
    return calls


def test_a_401_without_credentials_comes_before_the_body_is_parsed(guarded, parses) -> None:
    client, _ = guarded
    assert len(MALFORMED_512K) > 510_000
    reply = client.post("/v2/enqueue", data=MALFORMED_512K, content_type="application/json")
    assert reply.status_code == 401, reply.json
    assert "no API key" in reply.json["errors"][0]
    assert parses == []  # the parser never saw it


def test_an_unknown_api_key_is_refused_before_the_body_is_parsed(guarded, parses) -> None:
    client, _ = guarded
    for headers in ({"X-API-Key": "pdr_guess"}, {"Authorization": "Bearer pdr_guess"}):
        reply = client.post("/v2/enqueue", data=MALFORMED_512K, content_type="application/json",
                            headers=headers)
        assert reply.status_code == 401 and "not one this relay knows" in reply.json["errors"][0]
    reply = client.post("/adapters/alertmanager", data=MALFORMED_512K,
                        content_type="application/json", headers={"X-API-Key": "pdr_guess"})
    assert reply.status_code == 401
    assert parses == []


def test_a_known_key_in_the_body_or_header_lets_the_body_be_parsed(guarded, parses,
                                                                    keys) -> None:
    client, token = guarded
    stranger = make_key()  # looks like a routing key, but not one of the relay's
    body = MALFORMED_512K[:-1] + f'"{stranger}"'.encode()
    assert client.post("/v2/enqueue", data=body,
                       content_type="application/json").status_code == 401
    assert parses == []
    named = MALFORMED_512K[:-1] + f'"{keys[1]}"'.encode()
    assert client.post("/v2/enqueue", data=named,
                       content_type="application/json").status_code == 400  # malformed
    header = client.post("/v2/enqueue", data=MALFORMED_512K, content_type="application/json",
                         headers={"X-Routing-Key": keys[0]})
    assert header.status_code == 400
    with_token = client.post("/v2/enqueue", data=MALFORMED_512K,
                             content_type="application/json", headers={"X-API-Key": token})
    assert with_token.status_code == 400 and "malformed JSON" in with_token.json["errors"][0]
    assert len(parses) == 3
    # a key found by the scan is still checked per event after the parse
    assert client.post("/v2/enqueue", json=[trigger(routing_key=keys[0]), trigger()]
                       ).status_code == 401
    assert client.post("/v2/enqueue", json=[trigger(routing_key=keys[0])]).status_code == 202
