"""Connecting to the history's PostgreSQL (``RELAY_HISTORY_DSN``): psycopg 3, a bounded
connect and statement time, and errors that name the server by its masked DSN (the
password never reaches a log, a message or a traceback we raise)."""

from __future__ import annotations

import math
import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from relay.errors import RecordDown
from relay.settings import masked_url

CONNECT_TIMEOUT_S = 5.0  # the most a connection attempt waits
STATEMENT_TIMEOUT_MS = 30_000  # the most one statement runs (a slow server: fail, retry)
# A server gone without a word (its host dead, the network cut) while a statement waits:
# statement_timeout is the server's, and the system's keepalive waits 2 hours, the
# exporter stuck and the stream's caps trimming what it should have written. Found dead
# in about 25 s instead (keepalive probes unanswered, or data unacknowledged for 30 s);
# a DSN's own settings of these win.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
             "keepalives_count": 3, "tcp_user_timeout": 30_000}


def connect(dsn: str, *, autocommit: bool = False, timeout_s: float = CONNECT_TIMEOUT_S,
            statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> psycopg.Connection:
    """A connection to ``dsn``, or RecordDown saying why (masked). Without JIT: the
    record's statements are short, and over many day partitions JIT compiled one for
    160 ms that ran in 11 ms."""
    try:
        given = conninfo_to_dict(dsn)
        alive = {name: value for name, value in KEEPALIVE.items() if name not in given}
        return psycopg.connect(
            make_conninfo(dsn, **alive), autocommit=autocommit,
            connect_timeout=max(1, math.ceil(timeout_s)), application_name="pd-relay",
            options=f"-c statement_timeout={statement_timeout_ms} -c jit=off")
    except psycopg.Error as exc:
        raise RecordDown([reason(exc, dsn)]) from None


def reason(exc: BaseException, dsn: str) -> str:
    """``exc`` said without ``dsn``'s password: "PostgreSQL at <masked dsn>: <what>"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"PostgreSQL at {shown(dsn)}: {hide(text, dsn)}"


def shown(dsn: str) -> str:
    """The DSN as logs may say it (``postgresql://user:***@host/db``)."""
    return masked_url(dsn)


def hide(text: str, dsn: str) -> str:
    """``text`` with the DSN and its password replaced."""
    text = text.replace(dsn, shown(dsn))
    for password in passwords(dsn):
        text = text.replace(password, "***")
    return text


def passwords(dsn: str) -> list[str]:
    """The password in ``dsn`` as libpq reads it and as written (raw, percent-decoded),
    longest first; also from a DSN libpq refuses, whose error quotes the bad part."""
    found: set[str] = set()
    try:
        found.add(str(conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.Error:
        pass
    _, sep, rest = dsn.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    written = [userinfo.partition(":")[2]] if sep and at else []
    written += re.findall(r"(?:^|[?&])password=([^&#]*)", dsn, flags=re.I)
    for raw in written:
        found |= {raw, unquote(raw)}
    return sorted((p for p in found if len(p) >= 3), key=len, reverse=True)
