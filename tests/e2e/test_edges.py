"""End to end at nginx, the relay's edge: the operator's pages only from allowed
addresses (127.0.0.2 plays another host), a flooding client limited, nginx's own errors
in JSON, and a request ID that is a plain token or replaced."""

from __future__ import annotations

import socket

import pytest
import requests

from relay.stack.processes import HOST
from relay.stack.render import Limits
from tests.conftest import trigger


def from_other_host(url: str, path: str) -> tuple[int, str]:
    """GET ``path`` from 127.0.0.2, another address of this machine."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5,
                                  source_address=("127.0.0.2", 0)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def edge(make_stack):
    stack = make_stack(keys=1)
    node = stack.start_ingress().removeprefix("http://")
    try:
        socket.create_connection((HOST, 1), source_address=("127.0.0.2", 0), timeout=1)
    except ConnectionRefusedError:
        pass
    except OSError:
        pytest.skip("this machine has no 127.0.0.2")
    url = stack.start_nginx([node], limits=Limits(rate=5, burst=10, connections=20))
    return stack, url


def test_metrics_and_readyz_only_from_allowed_addresses(edge) -> None:
    stack, url = edge
    assert requests.get(url + "/metrics", timeout=5).status_code == 200  # from 127.0.0.1
    for path in ("/metrics", "/readyz"):
        status, body = from_other_host(url, path)
        assert status == 403 and '"status":"forbidden"' in body
    status, _ = from_other_host(url, "/healthz")
    assert status == 200  # the rest stays open


def test_a_flooding_client_is_limited_with_a_json_429(edge) -> None:
    stack, url = edge
    session = requests.Session()
    codes = [session.post(url + "/v2/enqueue", json=trigger(dedup_key=f"f{n}"), timeout=5)
             for n in range(40)]
    limited = [reply for reply in codes if reply.status_code == 429]
    assert limited and codes[0].status_code == 202
    assert limited[0].json()["status"] == "throttle exceeded"
    assert limited[0].headers["Retry-After"] == "1"


def test_nginx_errors_are_json_and_request_ids_plain_tokens(edge) -> None:
    stack, url = edge
    huge = requests.get(url + "/healthz", headers={"X-Big": "x" * 40_000}, timeout=5)
    assert huge.status_code in (400, 431, 494) and huge.json()["status"] == "bad request"
    odd = requests.get(url + "/healthz", headers={"X-Request-ID": "a b\tc<script>"}, timeout=5)
    assert odd.status_code == 200 and odd.headers["X-Request-ID"] != "a b\tc<script>"
    assert odd.headers["X-Request-ID"].isalnum()
    kept = requests.get(url + "/healthz", headers={"X-Request-ID": "req-42.a"}, timeout=5)
    assert kept.headers["X-Request-ID"] == "req-42.a"
