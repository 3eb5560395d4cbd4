"""The record's connections run without PostgreSQL's JIT compiler: the writer's and the
readers' statements are short, and on a record of many day partitions JIT spent 160 ms
compiling a statement that ran in 11 ms (docs/BENCHMARKS.md, issue 29's fixes)."""

from __future__ import annotations

from relay.history.pg.connect import connect


def test_jit_is_off_on_the_records_connections(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("off",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)

