"""The history drill (issue 29), for ``scripts/drill --only history``: PostgreSQL, which
keeps every event's record, stopped for 60 s under load, then started again.

The stack is scripts/drill.py's (two ingress nodes behind nginx, two worker processes),
with ``RELAY_HISTORY_DSN`` naming a local PostgreSQL of its own (``relay.stack.postgres``:
Debian's package) and two ``pd-relay history-exporter`` processes. Incidents (trigger,
acknowledge, resolve) are sent through nginx at a steady rate; a third of the way in,
PostgreSQL is stopped (``pg_ctl stop -m fast``: every session ended) for ``OUTAGE_S``
while the load goes on, then started again; the load runs a while longer, then the
drill waits for PagerDuty to have every accepted event and for the exporters to have
committed every history entry (the export's lag 0: ``relay.history.pg.lag``).

Verdict: PagerDuty's delivery unaffected (scripts/drill.py's counts from the simulator:
lost 0, order violations 0); and the record whole once PostgreSQL is back: every
accepted event is in ``pd_relay.events`` once (by dedup_key and action), with its
accepted step and its end (delivered), and ``lost`` (entries trimmed before export,
``Names.history_export``) is 0.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import failover_verdict
import psycopg

from relay.errors import ConfigError
from relay.history.pg.lag import lag_ms
from relay.names import Names
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.postgres import LocalPostgres, binaries
from relay.stack.processes import free_port, wait_until

OUTAGE_S = 60.0  # the issue's: PostgreSQL stopped for a minute under load
ACTIONS = failover_verdict.ACTIONS


def run(workdir: Path, seconds: float, rate: float,
        build: Callable[..., tuple[Stack, str]], load_of: Callable[[str], Any],
        verdict: Callable[[Stack, Any], dict[str, int]]) -> dict[str, Any]:
    """The drill on a stack from ``build`` with load from ``load_of(url)`` (drill.py's
    Load) judged by ``verdict``; its row (``drill`` names the record's figures)."""
    workdir.mkdir(parents=True)
    home = Path(tempfile.mkdtemp(prefix="pd-relay-drill-pg-"))  # as root the server runs
    postgres = LocalPostgres(home, free_port())  # as postgres: not in the 0700 workdir
    postgres.start()
    stack: Stack | None = None
    try:
        stack, url = build(workdir / "stack", RELAY_HISTORY_DSN=postgres.dsn())
        stack.history_migrate()
        for _ in range(2):
            stack.start_history_exporter()
        client, names = stack.redis.client(), Names()  # type: ignore[union-attr]
        load = load_of(url)
        load.start()
        time.sleep(seconds / 3)
        postgres.stop()
        stopped = time.monotonic()
        lag_peak = 0
        while time.monotonic() - stopped < OUTAGE_S:
            lag_peak = max(lag_peak, lag_ms(client, names, int(time.time() * 1000)) or 0)
            time.sleep(1)
        postgres.start()
        back = time.monotonic()
        wait_until(lambda: (lag_ms(client, names, int(time.time() * 1000)) or 0) < 2000, 120,
                   "the exporters to catch up (lag under 2 s)", every=0.2)
        caught_up = time.monotonic() - back
        time.sleep(max(0.0, seconds / 3 - caught_up))
        load.stopped.set()
        load.join(30)
        row = drained(stack, load, verdict)
        wait_until(lambda: lag_ms(client, names, int(time.time() * 1000)) == 0, 120,
                   "the exporters to commit every history entry", every=0.5)
        record = recorded(postgres.dsn(), load.accepted)
        lost = int(client.hget(names.history_export, "lost") or 0)
        row.update({"record missing": record["missing"], "record twice": record["twice"],
                    "record lost": lost})
        row["drill"] = (f"history (record: {record['found']} of {len(set(load.accepted))} "
                        f"events in PostgreSQL, {record['missing']} missing, "
                        f"{record['twice']} twice, {record['unfinished']} without their "
                        f"end, lost from the record {lost}; export lag peaked at "
                        f"{lag_peak / 1000:.0f} s, back under 2 s {caught_up:.1f} s after "
                        "PostgreSQL came back)")
        return row
    finally:
        if stack is not None:
            stack.close()
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)


def skipped() -> str:
    """Why the drill cannot run here ("" when it can): no PostgreSQL server installed."""
    try:
        binaries()
    except ConfigError as exc:
        return str(exc)
    return ""


def drained(stack: Stack, load: Any, verdict: Callable[[Stack, Any], dict[str, int]]
            ) -> dict[str, Any]:
    """Wait (120 s at most) for PagerDuty to have every accepted event; the verdict."""
    def done() -> bool:
        arrivals = stack.sim_get("events")["events"]
        seqs = {failover_verdict.seq_of(e) for e in arrivals if e["status"] == 202}
        return set(load.accepted) <= seqs

    stopped = time.monotonic()
    try:
        wait_until(done, 120, "the backlog to drain", every=0.5)
        drain = f"{time.monotonic() - stopped:.0f}"
    except AssertionError:
        drain = "> 120"  # what is still missing is reported as lost
    counts = stack.sim_get("stats")["counts"]
    return {"drill": "history", **verdict(stack, load), "drained after load (s)": drain,
            "PagerDuty errors": sum(int(v) for k, v in counts.items()
                                    if k.isdigit() and k != "202")}


def recorded(dsn: str, accepted: list[str]) -> dict[str, int]:
    """What PostgreSQL holds of the accepted events (``<incident>/<step>``: the incident
    is the dedup_key, the step the action): found, missing, twice, and unfinished (no
    delivered step)."""
    wanted = {(seq.split("/")[0], ACTIONS[int(seq.split("/")[1])]) for seq in accepted}
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT e.dedup_key, e.action, bool_or(s.step = 'accepted'), "
            "bool_or(s.step = 'delivered') FROM pd_relay.events e LEFT JOIN pd_relay.steps s "
            "ON s.event_id = e.id GROUP BY e.id, e.dedup_key, e.action").fetchall()
    seen = Counter((k, a) for k, a, _, _ in rows)
    ended = {(k, a) for k, a, first, end in rows if first and end}
    return {"found": len(wanted & set(seen)), "missing": len(wanted - set(seen)),
            "twice": sum(1 for k in wanted if seen.get(k, 0) > 1),
            "unfinished": len((wanted & set(seen)) - ended)}
