"""Issue 23 (review): with RELAY_LOG_FORMAT=json the log line a sender's value reaches is not
escaped for the terminal. KeyScrubber skips printable() for JSON ("JSON escapes by
itself"), but JsonFormatter uses ensure_ascii=False: json.dumps escapes only C0, so C1
controls (U+009B is CSI) and bidi overrides (U+202E) reach stderr raw, which
`docker compose logs` / the foreground process show on the operator's terminal. Now they
are written as JSON escapes: a JSON reader still gets the sender's text unchanged."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from relay import logs

RAW = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_sender_control_reaches_the_log_stream(fmt: str, monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    logs.configure("channels", "INFO", fmt)
    try:
        logging.getLogger("relay.channels.jobs").warning(
            "channel %s: gave up on %s dedup_key=%s", "hook", "triggered",
            "evil\u202egnp.exe\x9b31m")
        logging.getLogger().handlers[0].flush()
    finally:
        logging.getLogger().handlers[:] = []
    out = stream.getvalue()
    assert "dedup_key=" in out
    assert not RAW.search(out), repr(out)
    if fmt == "json":  # escaped, not lost: the JSON still says what the sender sent
        assert json.loads(out)["message"].endswith("dedup_key=evil\u202egnp.exe\x9b31m")
