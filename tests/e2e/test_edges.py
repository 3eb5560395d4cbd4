"""End to end at nginx, the relay's edge: the operator's pages only from allowed
addresses (127.0.0.2 plays another host), a flooding client limited, nginx's own errors
in JSON, and a request ID that is a plain token or replaced."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest
import requests

from relay.stack.nginx import children
from relay.stack.processes import HOST, wait_until
from relay.stack.render import Limits
from tests.conftest import trigger


def from_other_host(url: str, path: str, headers: dict[str, str] | None = None
                    ) -> tuple[int, str]:
    """GET ``path`` from 127.0.0.2, another address of this machine."""
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    with socket.create_connection((host, int(port)), timeout=5,
                                  source_address=("127.0.0.2", 0)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
                     .encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def edge(make_stack):
    stack = make_stack(keys=1, RELAY_ADMIN_ALLOW="127.0.0.1")  # nginx's own address
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
    # the app guards them too: straight to the node from another address, no token
    node = stack.ingress_urls[0]
    for path in ("/metrics", "/readyz"):
        status, body = from_other_host(node, path)
        assert status == 401 and '"status":"unauthorized"' in body and "RELAY_ADMIN_ALLOW" in body
    # and X-Forwarded-For from a client over TCP does not make it nginx's client
    status, _ = from_other_host(node, "/metrics", {"X-Forwarded-For": "127.0.0.1"})
    assert status == 401


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


def test_the_access_log_masks_keys_in_paths_and_keeps_no_query(edge) -> None:
    """PagerDuty's /integration/KEY/enqueue form puts a routing key in the path; a query
    string may hold anything. The make_stack fixture fails on any full key in a log."""
    stack, url = edge
    key = stack.keys[0]
    requests.post(f"{url}/integration/{key}/enqueue?routing_key={key}", json={}, timeout=5)
    requests.get(f"{url}/x/{key}/y/{key}z", timeout=5)
    wait_until(lambda: "/integration/***/enqueue" in stack.logs_text()
               and "/x/***/y/***" in stack.logs_text(), 10, "both access lines")
    log = stack.logs_text()
    assert "/x/***/y/***" in log and "routing_key=" not in log


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx's workers run as their starter's user")
def test_nginx_workers_run_unprivileged(edge) -> None:
    stack, url = edge
    master = next(p for p in stack.processes if p.name == "nginx").popen.pid
    workers = children(master)
    assert workers
    for pid in workers:
        uid = (Path("/proc") / str(pid) / "status").read_text().split("\nUid:")[1].split()[0]
        assert uid == str(pwd.getpwnam("nobody").pw_uid)
    # 180 KB: past nginx's default body buffer, yet never written to a file
    body = [trigger(f"big {n} " + "x" * 60, dedup_key=f"big-{n}") for n in range(1000)]
    assert len(json.dumps(body)) > 180_000
    assert requests.post(url + "/v2/enqueue", json=body, timeout=10).status_code == 202
