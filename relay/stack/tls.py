"""TLS at nginx: the operator's certificate and key (``PD_RELAY_TLS_CERT`` and
``PD_RELAY_TLS_KEY``), or, for ``--demo``, a self-signed pair made here. With them nginx
serves HTTPS only on ``PD_RELAY_PORT`` (a plain HTTP request there gets a JSON 400)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from relay.keys import exposed

# What nginx serves with a certificate: TLS 1.2 and 1.3, nginx's default ciphers; and
# HSTS, so a browser that once reached the dashboard over HTTPS never sends its cookie
# over plain HTTP to this host for a year (only over HTTPS: over plain HTTP it would be
# meaningless, and a browser ignores it there).
DIRECTIVES = """    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:pd_relay_tls:1m;
    ssl_session_timeout 1h;
    add_header Strict-Transport-Security "max-age=31536000" always;
"""


def directives(cert: Path, key: Path) -> str:
    """The server block's TLS lines for this certificate and key."""
    return DIRECTIVES.format(cert=cert, key=key)


def problems(cert: Path | None, key: Path | None) -> list[str]:
    """What is wrong with the pair: unreadable files, a key other users may read."""
    found = []
    for setting, path in (("PD_RELAY_TLS_CERT", cert), ("PD_RELAY_TLS_KEY", key)):
        if path is not None and not path.is_file():
            found.append(f"{setting}: cannot read {path}")
    if key is not None:
        found += exposed("PD_RELAY_TLS_KEY", key)
    return found


def demo_pair(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for localhost and 127.0.0.1 (kept across runs), or None
    when openssl is missing (the demo then serves plain HTTP, and says so)."""
    cert, key = directory / "demo-cert.pem", directory / "demo-key.pem"
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        print("pd-relay: no openssl here: the demo serves plain HTTP", file=sys.stderr)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
         "-subj", "/CN=pd-relay demo", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
