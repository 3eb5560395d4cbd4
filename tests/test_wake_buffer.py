"""A worker process frozen (SIGSTOP) while subscribed to the wake channel reads nothing:
Redis buffers every publish for it, memory the relay's reserve does not count (the
default limit for subscribers is 32 MB a client). The stack's Redis cuts such a client
off at a small buffer; the worker's listener subscribes again once it runs and wakes
every key (worker/wake.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import redis

from relay.stack import binaries, render
from relay.stack.processes import Process, wait_until


def test_the_stacks_redis_cuts_off_a_subscriber_that_reads_nothing(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    argv = render.redis_argv(binaries.redis_server(), 0, tmp_path, unixsocket=sock)
    server = Process("redis", argv, dict(os.environ), tmp_path)
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        wait_until(client.ping, 10, "Redis on its socket")
        frozen = socket.socket(socket.AF_UNIX)
        frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frozen.connect(str(sock))
        frozen.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$8\r\npdr:wake\r\n")
        try:
            wait_until(lambda: client.pubsub_numsub("pdr:wake")[0][1] == 1, 10,
                       "the subscriber")
            for _ in range(200):  # 200 x 20 KB: 4 MB for a client that reads nothing
                client.publish("pdr:wake", b"x" * 20_000)
            wait_until(lambda: client.pubsub_numsub("pdr:wake")[0][1] == 0, 10,
                       "the frozen subscriber cut off")
        finally:
            frozen.close()
            client.close()
    finally:
        server.kill()
