"""Logging set-up: ``time | LEVEL | component | message`` lines, or JSON lines.

Routing keys are masked by the code that logs them; as a second guard, every record is
scrubbed of any configured key before it is written. Logs are data, not control: in text
lines every line break, control and escape character of a message is written escaped
(``\\n``, ``\\x1b``), so a client's ``dedup_key`` cannot forge a line or hide text on a
terminal, and a message is cut at ``MAX_MESSAGE`` characters. JSON lines write the same
characters as JSON's ``\\uXXXX`` escapes (json.dumps alone escapes only C0), so a JSON
reader gets the message unchanged. ``printable`` does the same for the command line's
output.

Lines below WARNING are written in batches, at least every ``FLUSH_S``: one write per
batch instead of one per line. Each write lets go of the GIL, and under load every such
hand-over between the ingress's threads cost about 60 us of CPU per event
(docs/BENCHMARKS.md). A WARNING or worse is written at once, after the lines before it.
A process killed with SIGKILL loses at most the last ``FLUSH_S`` of INFO lines.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from relay.keys import mask

FLUSH_S = 0.5
BATCH_LINES = 512
MAX_MESSAGE = 2000
# C0, DEL, C1, line separators, and the bidi marks and overrides that reorder what a
# terminal shows (U+061C, U+200E/F, U+202A-E, U+2066-9)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                      r"\u2066-\u2069]")


KEY_RUN = re.compile(r"[A-Za-z0-9]{32,}")  # where a routing key may be (relay.keys)
SECRET_SEGMENT = 20  # a path segment this long may be a secret (nginx masks it too)
LONG_SEGMENT = re.compile(rf"/[^/]{{{SECRET_SEGMENT},}}")


def printable(text: object, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, every control character escaped, at most ``limit`` long."""
    line = str(text)
    if CONTROL.search(line):
        line = CONTROL.sub(_escape, line)
    if len(line) > limit:
        line = f"{line[:limit]}… ({len(line) - limit} more characters)"
    return line


def masked_path(path: str) -> str:
    """A request's path for a log line: each segment of ``SECRET_SEGMENT`` characters or
    more (a ping token, a routing key) masked, as nginx's access log masks them."""
    return printable(LONG_SEGMENT.sub("/***", path), 300)


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _json_escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


class KeyScrubber(logging.Filter):
    """Replace any full routing key in a record's message by its masked form; with
    ``escape``, make the message one printable line (``printable``).

    A key is 32 letters and digits: only the runs of at least 32 such characters are
    looked at, each 32-character stretch of them looked up in the set of keys, so a line
    costs the same with 3 keys or 1,000 (a line per event). A secret of another shape
    (none comes from a keys file) is searched for as it is."""

    def __init__(self, keys: Sequence[str], escape: bool = True) -> None:
        super().__init__()
        self.keys: frozenset[str] = frozenset()
        self.other: tuple[str, ...] = ()
        self.know(keys)
        self.escape = escape

    def know(self, keys: Sequence[str]) -> None:
        """Scrub these keys too (a worker process reads the keys file again on SIGHUP);
        the keys known before stay known."""
        self.other = tuple(dict.fromkeys(self.other + tuple(
            k for k in keys if not KEY_RUN.fullmatch(k) or len(k) != 32)))
        self.keys = self.keys | frozenset(keys)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.scrub(record.getMessage())
        if record.exc_info and not record.exc_text:  # a traceback: its exception's text
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)  # too
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if self.escape and (len(message) > MAX_MESSAGE or CONTROL.search(message)):
            message = printable(message)
        elif len(message) > MAX_MESSAGE:  # JSON lines: escaped by json.dumps, only cut
            cut = len(message) - MAX_MESSAGE
            message = f"{message[:MAX_MESSAGE]}… ({cut} more characters)"
        record.msg, record.args = message, None  # formatted once: the formatter reads it
        return True

    def scrub(self, text: str) -> str:
        """``text`` with every full routing key masked."""
        found = {run[at:at + 32] for run in KEY_RUN.findall(text) if self.keys
                 for at in range(len(run) - 31)} & self.keys
        found.update(k for k in self.other if k in text)  # none from a keys file
        for key in found:
            text = text.replace(key, mask(key))
        return text


_TRACEBACKS = logging.Formatter()  # formats a record's exception once, to be scrubbed


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """A record's traceback, as KeyScrubber left it (scrubbed), else formatted now."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


class TextFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} | {record.levelname} | {self.component} | "
        line += record.getMessage()
        exception = _exception(self, record)
        if exception:
            line += "\n" + exception
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
        exception = _exception(self, record)
        if exception:
            entry["exception"] = exception
        line = json.dumps(entry, ensure_ascii=False)
        # json.dumps escapes C0 only: DEL, C1 (U+009B is a terminal's CSI), line
        # separators and bidi overrides would reach the terminal raw. They can stand only
        # inside a JSON string here, where \uXXXX is the same character to a JSON reader.
        return CONTROL.sub(_json_escape, line) if CONTROL.search(line) else line


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


def scrub_also(keys: Sequence[str]) -> None:
    """Have the logs configured by ``configure`` scrub these keys as well."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, KeyScrubber):
                found.know(keys)


def configure(component: str, level: str, fmt: str, keys: Sequence[str] = ()) -> None:
    """Send every log record to stderr in the chosen format, with keys scrubbed."""
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component) if fmt == "json" else TextFormatter(component))
    handler.addFilter(KeyScrubber(keys, escape=fmt != "json"))  # JsonFormatter escapes
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


_SECOND: list[tuple[int, str]] = [(-1, "")]  # the last whole second written, and how


def _timestamp(record: logging.LogRecord) -> str:
    second, text = known = _SECOND[0]  # one (second, text) pair: threads swap it whole
    if second != int(record.created):  # a line per event: a second's text is made once
        second = int(record.created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SECOND[0] = (second, text) if second > known[0] else known
    return f"{text}.{int(record.msecs):03d}Z"
