"""Logging set-up: ``time | LEVEL | component | message`` lines, or JSON lines.

Routing keys are masked by the code that logs them; as a second guard, every record is
scrubbed of any configured key before it is written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence

from relay.keys import mask


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


def configure(component: str, level: str, fmt: str, keys: Sequence[str] = ()) -> None:
    """Send every log record to stderr in the chosen format, with keys scrubbed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component) if fmt == "json" else TextFormatter(component))
    handler.addFilter(KeyScrubber(keys))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" noise


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"
