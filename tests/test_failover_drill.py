"""``scripts/drill --only failover``'s own pieces: skipped with its reason where it cannot
run (not root), exit status 2 as the tools' "skipped"; what fails a scenario."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import drill  # noqa: E402
import failover  # noqa: E402
import failover_verdict  # noqa: E402


def row(**changes: object) -> dict[str, object]:
    clean: dict[str, object] = {"lost": 0, "order violations": 0, "misrouted": 0,
                                "over limit": 0, "unexpected answers": 0}
    return clean | changes


def test_not_root_the_failover_drill_says_why_and_exits_skipped(monkeypatch, capsys) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys, "argv", ["drill", "--only", "failover"])
    assert drill.main() == 2
    assert "failover: skipped: it makes network namespaces, which needs root" in \
        capsys.readouterr().out


def test_without_ip_it_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(failover_verdict.shutil, "which", lambda *a, **k: None)
    assert "iproute2" in failover_verdict.skipped()


def test_the_failover_drill_is_in_the_default_list() -> None:
    assert "failover" in drill.DRILLS


@pytest.mark.parametrize("change", [{"lost": 1}, {"order violations": 2}, {"misrouted": 1},
                                    {"over limit": 1}, {"unexpected answers": 1},
                                    {"rejoined as replica (s)": "no"}])
def test_a_scenario_fails_on(change: dict[str, object]) -> None:
    assert not failover.failed(row(**{"rejoined as replica (s)": "3"}))
    assert failover.failed(row(**change))


def test_the_load_clients_reset_a_connection_they_give_up_on() -> None:
    """SO_LINGER 0: a request abandoned on a cut link is dropped with its socket, not
    retransmitted into the host once healed (an acknowledge landed after its resolve)."""
    import socket
    import struct
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    class Ok(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # a kept connection, to look at
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        session = requests.Session()
        session.mount("http://", failover.Abortive())
        server.daemon_threads = True
        reply = session.get(url, timeout=5, stream=True)
        linger = reply.raw.connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        reply.close()
        session.close()
        assert struct.unpack("ii", linger) == (1, 0)
    finally:
        server.shutdown()
        server.server_close()


def test_a_host_process_that_ended_is_reported_with_its_log_not_waited_for(tmp_path) -> None:
    import failover_hosts

    log = tmp_path / "worker-h1.log"
    log.write_text("starting\npd-relay: invalid configuration:\n"
                   "  RELAY_LEASE_TTL_S=3 is too short\n")

    class Ended:
        name = "worker-h1"

        def __init__(self) -> None:
            self.log = log

        def alive(self) -> bool:
            return False

    ended = Ended()
    with pytest.raises(RuntimeError, match="worker-h1 ended: .*RELAY_LEASE_TTL_S=3 is too short"):
        failover_hosts._answers("http://127.0.0.1:9/", [ended])  # type: ignore[list-item]
