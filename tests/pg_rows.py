"""The record for the readers' tests: migrated by the migration runner and written by the
exporter's writer (``relay.history.pg.writer``) from the stream's entries."""

from __future__ import annotations

from typing import Any

from relay.history.entries import Step, steps_of
from relay.history.pg.connect import connect
from relay.history.pg.migrate import migrate
from relay.history.pg.partitions import Partitions
from relay.history.pg.writer import write as write_steps


def migrated(dsn: str) -> None:
    """Migrations applied, as ``pd-relay history migrate`` does."""
    with connect(dsn, autocommit=True) as conn:
        migrate(conn)


def entries_of(client: Any, stream: str, ids: list[str] | None = None) -> list[Step]:
    """The steps in the stream's entries (only ``ids`` when given)."""
    found = []
    for entry_id, fields in client.xrange(stream):
        if ids is None or entry_id in ids:
            found += steps_of(entry_id, dict(fields))
    return found


def write(dsn: str, steps: list[Step], key_names: tuple[str, ...] = ()) -> None:
    """Write ``steps`` (and their events) in one transaction, as an exporter does."""
    with connect(dsn, autocommit=True) as conn:
        write_steps(conn, steps, key_names, Partitions())
