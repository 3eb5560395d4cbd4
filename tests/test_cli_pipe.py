"""``pd-relay status | head``: a reader that leaves before the command has written
everything must not earn a traceback (found following the README with ``./start.sh
status | head``: a BrokenPipeError traceback after the first lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relay.auth import digest, new_token


def test_a_reader_gone_before_the_output_gets_no_traceback(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("R0123456789abcdefghijklmnopqrstu ops\n")
    routes = tmp_path / "routes.yml"
    routes.write_text(f'sources: [{{name: a, api_keys: ["{digest(new_token()[0])}"]}}]\n')
    for path in (keys, routes):
        path.chmod(0o600)
    env = {**os.environ, "RELAY_KEYS_FILE": str(keys), "RELAY_ROUTES_FILE": str(routes)}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes: EPIPE, every time
    try:
        done = subprocess.run([sys.executable, "-m", "relay.cli", "routes", "check"],
                              stdout=write, stderr=subprocess.PIPE, env=env, text=True,
                              timeout=60, cwd=Path(__file__).resolve().parent.parent)
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, \
        done.stderr
    assert done.returncode == 141  # as a shell reports a command SIGPIPE ended
