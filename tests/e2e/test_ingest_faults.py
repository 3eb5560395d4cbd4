"""End to end: an ingress node under faults stays truthful and never wedges."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections import Counter
from typing import Any

import pytest
import requests

from relay.stack.processes import wait_until
from tests.conftest import trigger

JSON = {"Content-Type": "application/json"}


def _load(url: str, bodies: list[bytes], results: list[tuple[bytes, int]]) -> None:
    with requests.Session() as session:
        for body in bodies:
            try:
                status = session.post(url + "/v2/enqueue", data=body, headers=JSON,
                                      timeout=30).status_code
            except requests.RequestException:
                status = 0
            results.append((body, status))


def test_a_frozen_ingress_node_takes_events_again_once_it_runs(make_stack) -> None:
    """SIGSTOP with requests under way for longer than every timeout, then SIGCONT:
    within seconds the node stores again, and every 202 it gave is stored."""
    stack = make_stack(keys=1, RELAY_REDIS_TIMEOUT_S="0.5", RELAY_ADMIN_ALLOW="127.0.0.1")
    url = stack.start_ingress()
    node = stack.processes[-1]
    results: list[tuple[bytes, int]] = []
    bodies = [[f'{{"event_action":"trigger","dedup_key":"f{t}-{n}","payload":{{"summary":"s",'
               f'"source":"h","severity":"info"}}}}'.encode() for n in range(400)]
              for t in range(8)]
    threads = [threading.Thread(target=_load, args=(url, b, results)) for b in bodies]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(results) >= 40, 30, "load to flow")
    for _ in range(3):  # three freezes, each longer than a request's waits (3 x 0.5 s)
        node.popen.send_signal(signal.SIGSTOP)
        threading.Event().wait(2.0)  # the freeze itself: the fault being injected
        node.popen.send_signal(signal.SIGCONT)
        wait_until(lambda: stack.post(trigger()).status_code == 202, 10,
                   "the node to store again after the freeze")
    for thread in threads:
        thread.join(120)
    statuses = Counter(status for _, status in results)
    assert set(statuses) <= {202, 503}, statuses
    client = stack.redis.client()
    stored = {str(raw) for kid in client.keys("pdr:queue:*") for raw in client.lrange(kid, 0, -1)}
    stored_keys = {raw.split('"dedup_key":"')[1].split('"')[0] for raw in stored}
    accepted = {body.decode().split('"dedup_key":"')[1].split('"')[0]
                for body, status in results if status == 202}
    assert accepted <= stored_keys, "a 202 for an event that was not stored"
    assert requests.get(url + "/readyz", timeout=5).status_code == 200


def test_hostile_bodies_beside_valid_load_cost_nobody_else_their_events(make_stack) -> None:
    """Lone surrogates and overflowing numbers are 400s for their own requests; the valid
    requests sent at the same time are all stored."""
    stack = make_stack(keys=1)
    url = stack.start_ingress()
    good = [f'{{"event_action":"trigger","dedup_key":"g{t}-{n}","payload":{{"summary":"s",'
            f'"source":"h","severity":"info"}}}}'.encode() for t in range(4) for n in range(60)]
    bad: list[Any] = [
        b'{"event_action":"trigger","payload":{"summary":"\\ud800","source":"h",'
        b'"severity":"info"}}',
        b'{"event_action":"trigger","payload":{"summary":"s","source":"h","severity":"info",'
        b'"custom_details":{"n":1e999}}}',
    ] * 60
    results: list[tuple[bytes, int]] = []
    lanes = [good[n::4] for n in range(4)] + [bad[n::2] for n in range(2)]
    threads = [threading.Thread(target=_load, args=(url, lane, results)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = Counter((body in good, status) for body, status in results)
    assert statuses == {(True, 202): len(good), (False, 400): len(bad)}, statuses
    client = stack.redis.client()
    assert sum(client.llen(name) for name in client.keys("pdr:queue:*")) == len(good)


def test_fuzzing_a_real_node_finds_no_5xx_and_costs_valid_senders_nothing(make_stack) -> None:
    """Hypothesis's bodies over real HTTP to a real ingress process, while a valid load
    runs beside them: never a 5xx or a dropped connection, and every valid 202 stored."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.test_fuzz import NEAR_VALID

    stack = make_stack(keys=2)
    url = stack.start_ingress()
    good = [f'{{"event_action":"trigger","dedup_key":"v{n}","payload":{{"summary":"s",'
            f'"source":"h","severity":"info"}}}}'.encode() for n in range(300)]
    results: list[tuple[bytes, int]] = []
    load = threading.Thread(target=_load, args=(url, good, results))
    load.start()
    seen: Counter[int] = Counter()
    session = requests.Session()

    @given(body=st.binary(max_size=2000) | NEAR_VALID)
    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(body: bytes) -> None:
        status = session.post(url + "/v2/enqueue", data=body, headers=JSON, timeout=30
                              ).status_code
        seen[status] += 1
        assert status in (202, 400, 413), (status, body[:200])

    fuzz()
    load.join(120)
    assert seen[400] > 100 and seen[202] > 0, seen
    assert Counter(status for _, status in results) == {202: len(good)}
    client = stack.redis.client()
    stored = "".join(str(raw) for name in client.keys("pdr:queue:*")
                     for raw in client.lrange(name, 0, -1))
    assert all(f'"dedup_key":"v{n}"' in stored for n in range(len(good)))


RAW_REQUESTS = [
    # framing and headers a hostile or broken client sends; each must get a 4xx answer
    b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 99999999999999999999\r\n\r\n{}",
    b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: -5\r\n\r\n{}",
    b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json; charset=\xff\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
    b"POST /v2/enqueue?\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"GARBAGE\r\n\r\n",
]


def _status_line(address: str, raw: bytes) -> bytes:
    import socket

    host, port = address.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(raw)
        answer = b""
        while b"\r\n" not in answer and (chunk := conn.recv(65536)):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_broken_framing_and_hostile_headers_get_a_4xx_answer(make_stack) -> None:
    """Straight to an ingress node: waitress and the app answer each with a 4xx status
    line, never a 5xx or a connection closed without an answer."""
    stack = make_stack(keys=1)
    url = stack.start_ingress()
    for raw in RAW_REQUESTS:
        status = _status_line(url, raw)
        assert status.split()[1:2] and status.split()[1].startswith(b"4"), (raw[:80], status)
    assert stack.post(trigger()).status_code == 202


@pytest.mark.skipif(not shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin"),
                    reason="needs nginx")
def test_through_nginx_oversized_headers_get_a_4xx_answer_too(make_stack) -> None:
    """Headers over waitress's limit: it closes with the request unread, which a client
    sees as a reset; nginx, in front of every node in a deployment, answers 400."""
    stack = make_stack(keys=1)
    url = stack.start_nginx([stack.start_ingress().removeprefix("http://")])
    big = (b"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 +
           b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    for raw in [*RAW_REQUESTS, big]:
        status = _status_line(url, raw)
        assert status.split()[1:2] and status.split()[1].startswith(b"4"), (raw[:80], status)
