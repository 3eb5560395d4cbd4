"""Logging set-up: ``time | LEVEL | component | message`` lines, or JSON lines.

Routing keys are masked by the code that logs them; as a second guard, every record is
scrubbed of any configured key before it is written.

Lines below WARNING are written in batches, at least every ``FLUSH_S``: one write per
batch instead of one per line. Each write lets go of the GIL, and under load every such
hand-over between the ingress's threads cost about 60 us of CPU per event
(docs/BENCHMARKS.md). A WARNING or worse is written at once, after the lines before it.
A process killed with SIGKILL loses at most the last ``FLUSH_S`` of INFO lines.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from relay.keys import mask

FLUSH_S = 0.5
BATCH_LINES = 512


class KeyScrubber(logging.Filter):
    """Replace any full routing key in a record's message by its masked form."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        self.keys = tuple(keys)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(key in message for key in self.keys):
            for key in self.keys:
                message = message.replace(key, mask(key))
            record.msg, record.args = message, None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} | {record.levelname} | {self.component} | "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes lines below WARNING in batches (see the module doc)."""

    def __init__(self, stream: TextIO, flush_s: float = FLUSH_S) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.stopped = threading.Event()
        if flush_s > 0:
            threading.Thread(target=self._flush_every, args=(flush_s,), name="log-flush",
                             daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # logging must not raise; the stdlib reports it on stderr
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self.pending.append(line)
            if record.levelno >= logging.WARNING or len(self.pending) >= BATCH_LINES:
                self._write()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        self.stopped.set()
        self.flush()
        super().close()

    def _write(self) -> None:
        if self.pending:
            lines, self.pending = "".join(self.pending), []
            self.stream.write(lines)
        if self.stream and hasattr(self.stream, "flush"):
            self.stream.flush()

    def _flush_every(self, seconds: float) -> None:
        while not self.stopped.wait(seconds):
            if self.pending:
                self.flush()


def configure(component: str, level: str, fmt: str, keys: Sequence[str] = ()) -> None:
    """Send every log record to stderr in the chosen format, with keys scrubbed."""
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component) if fmt == "json" else TextFormatter(component))
    handler.addFilter(KeyScrubber(keys))
    # No line shows the caller, thread or process: skip collecting them for each record
    # (the logging HOWTO's "Optimization"; findCaller was a third of a record's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BatchingHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" noise


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"
