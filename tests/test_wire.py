"""The wire (issue 25): nginx sized for the per-client limits, HSTS only over HTTPS, and a
warning when the stack takes plain HTTP from beyond this machine. The slow and idle
clients themselves: tests/e2e/test_slow_clients.py."""

from __future__ import annotations

import http.client
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from relay.stack import tls
from relay.stack.options import StackOptions
from relay.stack.processes import free_port, wait_until
from relay.stack.render import CLIENTS, Limits, nginx, nginx_argv
from relay.stack.report import announce, plain_http_warning, warn_plain_http

NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")


def directive(text: str, name: str) -> int:
    found = re.search(rf"\b{name} (\d+);", text)
    assert found, f"no {name}"
    return int(found.group(1))


@pytest.mark.parametrize("connections", [1, 20, 50, 120])
def test_worker_connections_are_sized_for_the_per_client_limits(tmp_path: Path,
                                                                connections: int) -> None:
    """Each client address may hold its connections, each with one to an ingress node
    beside it, for a hundred addresses at once; and a worker may open that many files."""
    main = nginx(tmp_path, "127.0.0.1:8080", ["127.0.0.1:8081"],
                 limits=Limits(connections=connections)).read_text()
    slots = directive(main, "worker_connections")
    assert slots >= min(2 * connections * CLIENTS, 16384) and slots >= 4096
    files = directive(main, "worker_rlimit_nofile")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert files >= slots or (os.geteuid() != 0 and files == hard)


def test_the_defaults_figure_is_the_one_the_readme_gives(tmp_path: Path) -> None:
    main = nginx(tmp_path, "127.0.0.1:8080", ["127.0.0.1:8081"]).read_text()
    assert directive(main, "worker_connections") == 10_064
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "10,064" in readme


def test_idle_and_slow_clients_are_bounded_in_the_site(tmp_path: Path) -> None:
    nginx(tmp_path, "127.0.0.1:8080", ["127.0.0.1:8081"])
    site = [line.split("#")[0].strip() for line in
            (tmp_path / "pd-relay.conf").read_text().splitlines()]
    for line in ("keepalive_timeout 15s;", "keepalive_requests 1000;", "lingering_time 5s;",
                 "reset_timedout_connection on;", "client_header_timeout 10s;",
                 "client_body_timeout 10s;", "proxy_request_buffering on;"):
        assert line in site, line


def test_hsts_only_when_nginx_serves_https(tmp_path: Path) -> None:
    nginx(tmp_path / "plain", "127.0.0.1:8080", ["127.0.0.1:8081"])
    assert "Strict-Transport-Security" not in (tmp_path / "plain" / "pd-relay.conf").read_text()
    lines = tls.directives(Path("c.pem"), Path("k.pem"))
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in lines


@pytest.mark.skipif(not NGINX or not shutil.which("openssl"), reason="needs nginx and openssl")
def test_nginx_sends_hsts_over_https(tmp_path: Path) -> None:
    pair = tls.demo_pair(tmp_path / "tls")
    assert pair is not None and NGINX is not None
    port = free_port()
    main = nginx(tmp_path / "nginx", f"127.0.0.1:{port}", ["127.0.0.1:1"], workers="1",
                 tls=pair)
    checked = subprocess.run([*nginx_argv(NGINX, main)[:-2], "-t", "-q"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(nginx_argv(NGINX, main), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(pair[0]))
    try:
        def forbidden() -> tuple[int, str | None]:
            # from 127.0.0.2: /metrics is the operator's, so nginx answers 403 itself
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context,
                                               source_address=("127.0.0.2", 0))
            try:
                conn.request("GET", "/metrics")
                reply = conn.getresponse()
                return reply.status, reply.getheader("Strict-Transport-Security")
            finally:
                conn.close()

        try:
            socket.create_connection(("127.0.0.1", 1), source_address=("127.0.0.2", 0),
                                     timeout=1).close()
        except ConnectionRefusedError:
            pass
        except OSError:
            pytest.skip("this machine has no 127.0.0.2")
        assert wait_until(forbidden, 10, "nginx over HTTPS") == (403, "max-age=31536000")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.0.2.7", "relay.example.com", "10.1.2.3"])
def test_plain_http_beyond_loopback_is_warned_of(tmp_path: Path, bind: str, capsys) -> None:
    options = StackOptions.from_env({"PD_RELAY_BIND": bind}, tmp_path, euid=1000)
    warning = plain_http_warning(options)
    assert warning and "WARNING" in warning and "PD_RELAY_TLS_CERT" in warning
    assert "PD_RELAY_TLS_KEY" in warning and "in the clear" in warning
    warn_plain_http(options)
    assert warning in capsys.readouterr().err  # at start-up
    announce(options, "logs/", anonymous=False)
    assert warning in capsys.readouterr().out  # and in the summary


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_or_https_is_not_warned_of(tmp_path: Path, bind: str, capsys) -> None:
    options = StackOptions.from_env({"PD_RELAY_BIND": bind}, tmp_path, euid=1000)
    assert plain_http_warning(options) is None
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    served = StackOptions.from_env({"PD_RELAY_TLS_CERT": str(cert),
                                    "PD_RELAY_TLS_KEY": str(key)}, tmp_path)
    assert served.bind == "0.0.0.0" and plain_http_warning(served) is None
    warn_plain_http(options)
    announce(served, "logs/", anonymous=False)
    captured = capsys.readouterr()
    assert "WARNING" not in captured.err + captured.out
