#!/usr/bin/env python3
"""What the record's writer (``relay.history.pg.writer.write``) costs a batch when the
record already holds STORED events (90 days of them, ``scripts/history_data.py``): batches
of 100 and 10,000 steps (an accepted step and a delivered one per event, of today), timed
one ``write`` each (a local PostgreSQL). With WRITER, that file's ``write`` is timed in
turn with this release's (e.g. an older writer.py from ``git show``), in the same run.

    .venv/bin/python scripts/history_write_cost.py [STORED] [WRITER]
"""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from history_data import generate  # noqa: E402

from relay.history.entries import Step  # noqa: E402
from relay.history.pg import writer  # noqa: E402
from relay.history.pg.connect import connect  # noqa: E402
from relay.history.pg.migrate import migrate  # noqa: E402
from relay.history.pg.partitions import Partitions  # noqa: E402
from relay.ids import token  # noqa: E402
from relay.stack.postgres import LocalPostgres  # noqa: E402
from relay.stack.processes import free_port  # noqa: E402

ROUNDS = {100: 5, 10_000: 2}


def other(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("writer_compared", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["writer_compared"] = module
    spec.loader.exec_module(module)
    return module


def batch(size: int, at_ms: int) -> list[Step]:
    steps = []
    for n in range(size // 2):
        event_id = token(8)
        steps.append(Step(f"{at_ms + n}-0", 0, "accepted", event_id, f"k{n}", 1, at_ms + n,
                          {"a": "trigger"}))
        steps.append(Step(f"{at_ms + n + 1}-1", 0, "delivered", event_id, f"k{n}", 0,
                          at_ms + n + 1, {}))
    return steps


def main() -> int:
    stored = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    writers = [("this release", writer)] + ([(sys.argv[2], other(sys.argv[2]))]
                                            if len(sys.argv) > 2 else [])
    where = Path(tempfile.mkdtemp(prefix="pdr-write-cost-"))
    where.chmod(0o755)  # as root, PostgreSQL runs as its own user
    postgres = LocalPostgres(where / "pg", free_port())
    try:
        postgres.start()
        with connect(postgres.dsn(), autocommit=True) as conn:
            migrate(conn)
        took = generate(postgres.dsn(), stored, say=lambda line: None)
        print(f"{stored:,} events stored in {took:.0f} s")
        with connect(postgres.dsn(), autocommit=True) as conn:
            partitions, at_ms = Partitions(), int(time.time() * 1000)
            for size, rounds in ROUNDS.items():
                for _ in range(2):  # each writer twice, in turn
                    for name, module in writers:
                        times = []
                        for _ in range(rounds):
                            at_ms += 20_000
                            steps = batch(size, at_ms)
                            began = time.monotonic()
                            module.write(conn, steps, (), partitions)
                            times.append((time.monotonic() - began) * 1000)
                        print(f"{name}: a {size:,}-step batch: median "
                              f"{statistics.median(times):.0f} ms "
                              f"({', '.join(f'{t:.0f}' for t in times)})")
    finally:
        postgres.stop()
        shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
