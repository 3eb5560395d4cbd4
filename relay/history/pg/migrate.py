"""The record's migrations: plain SQL files in ``migrations/`` (``NNNN_name.sql``), applied
in order by ``pd-relay history migrate`` and recorded in ``pd_relay.migrations`` (version,
name, applied_at). All pending files apply in one transaction (PostgreSQL's DDL is
transactional: a failure leaves the database as it was), under an advisory lock, so two
``migrate`` runs at once apply each file once.

A database migrated by a later release (a version above ``SCHEMA_VERSION``) is refused,
never written: promise 9, a release reads what it knows or says why it stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from relay.errors import RecordFormatError
from relay.history.pg import SCHEMA, SCHEMA_VERSION

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK = 0x7064725F6D696772  # pg_advisory_xact_lock's key while migrating ("pdr_migr")
FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """This release's migrations, in order."""
    found = []
    for path in sorted(MIGRATIONS.iterdir()):
        match = FILE.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text()))
    return found


def version(conn: psycopg.Connection) -> int:
    """The database's schema version (0: never migrated)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.migrations",)).fetchone()
    if not row or not row[0]:
        return 0
    top = conn.execute(f"SELECT max(version) FROM {SCHEMA}.migrations").fetchone()
    return int(top[0] or 0) if top else 0


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply what the database lacks; return what was applied ([]: up to date).
    RecordFormatError for a database a later release migrated."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations ("
                     "version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        current = version(conn)
        if current > SCHEMA_VERSION:
            raise later(current)
        applied = [m for m in available() if m.version > current]
        for migration in applied:
            conn.execute(migration.sql.encode())
            conn.execute(f"INSERT INTO {SCHEMA}.migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
    return applied


def require(conn: psycopg.Connection) -> int:
    """The version, if this release may write it; else RecordFormatError saying why."""
    current = version(conn)
    if current > SCHEMA_VERSION:
        raise later(current)
    if current < SCHEMA_VERSION:
        raise RecordFormatError(
            f"the history's PostgreSQL holds the record's schema version {current}, this "
            f"release needs {SCHEMA_VERSION}: run `pd-relay history migrate`")
    return current


def later(current: int) -> RecordFormatError:
    return RecordFormatError(
        f"the history's PostgreSQL was migrated by a later release (schema version "
        f"{current}; this release knows up to {SCHEMA_VERSION}): run that release, or "
        f"point RELAY_HISTORY_DSN at another database")
