"""HTTP over a Unix socket, and who answered: the native stack's ingress nodes listen on
sockets in its private run directory, and a node counts as ready only when the process
supervisord started for it answers there (``SO_PEERCRED``: the pid of the process that
listens), never another one that took its place."""

from __future__ import annotations

import http.client
import socket
import struct
from pathlib import Path

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class _Connection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def answers(path: Path, target: str, timeout: float = 2.0) -> tuple[int, int]:
    """GET ``target`` over the socket at ``path``: the status, and the pid of the process
    listening there."""
    connection = _Connection(path, timeout)
    try:
        connection.connect()
        assert connection.sock is not None
        pid = _CRED.unpack(connection.sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))[0]
        connection.request("GET", target, headers={"Connection": "close"})
        reply = connection.getresponse()
        reply.read()
        return reply.status, pid
    finally:
        connection.close()


def ready_at(path: Path, pid: int) -> bool:
    """/readyz at ``path`` answers 200, from process ``pid`` (0: none is known)."""
    if not pid:
        return False
    try:
        status, peer = answers(path, "/readyz")
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and peer == pid
