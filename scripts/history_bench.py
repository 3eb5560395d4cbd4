"""The history's benchmarks (issue 29), for ``scripts/bench --only history``: the record
in PostgreSQL, against the issue's goals.

- **Searches on 1,000,000 events** (``scripts/history_data.py`` puts them into the real
  schema, 90 days of them): by dedup_key, by sender (the API's ``source``) over a day, by
  payload.source (the host) over a day, a page of the Events list (the first, or one
  further), each through ``/api/v1/events`` over HTTP (an ingress node reading the record
  and the stream's tail, ``relay.history.pg.stories``); an incident's trace (what ``pd-relay
  trace`` reads: ``Finder.search`` with no limit, in process); and each query's SQL alone.
- **Export under the full single-event ingest** (wrk through nginx to two ingress nodes,
  as the bench's first measurement): the export's lag (``relay.history.pg.lag``) sampled
  every 100 ms, p99; ingest with the exporter running against without it, the same stack,
  interleaved rounds.
- **A burst of batches** (100 events a request, four clients): how long until the
  exporter has committed all of it.

The CI run (``scripts/bench`` without ``--only``) measures the same on less (100,000
events, a 20,000-event burst, one round); ``--only history`` or ``--full`` the goals' sizes.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import history_data
import psycopg
import requests

from relay.history.pg.lag import lag_ms
from relay.history.pg.stories import Finder
from relay.history.search import Query
from relay.names import Names
from relay.settings import Settings
from relay.stack.postgres import LocalPostgres
from relay.stack.processes import free_port, wait_until

NAMES = Names()
ROOMY_MB = 160  # a stream cap that holds a 100,000-event burst with its stored events


class HistoryBench:
    def __init__(self, bench: Any, goals: bool) -> None:
        """``bench``: scripts/bench.py's Bench (its stacks, wrk, record); ``goals``: the
        issue's sizes (else the CI run's)."""
        self.bench = bench
        self.goals = goals
        # a directory of its own: as root the server runs as ``postgres``, which may not
        # enter the bench's (mode 0700) working directory
        self.home = Path(tempfile.mkdtemp(prefix="pd-relay-bench-pg-"))
        self.postgres = LocalPostgres(self.home, free_port())

    def run(self) -> None:
        started = time.monotonic()
        self.postgres.start()
        print(f"  PostgreSQL started in {time.monotonic() - started:.1f} s", flush=True)
        try:
            self.searches()
            self.export()
        finally:
            self.postgres.stop()
            shutil.rmtree(self.home, ignore_errors=True)

    def database(self, name: str) -> str:
        self.postgres.create_database(name)
        return self.postgres.dsn(name)

    # -- searches ------------------------------------------------------------------------
    def searches(self) -> None:
        count = 1_000_000 if self.goals else 100_000
        dsn = self.database("searches")
        seconds = history_data.generate(dsn, count)
        with psycopg.connect(dsn) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                ).fetchone()[0]  # type: ignore[index]
        self.bench.record(f"H0. {count:,} events (3 steps each) over 90 days into the record",
                          f"{seconds:.0f} s by generate_series, {size} on disk", "-")
        rounds = 400 if self.goals else 100
        stack = self.bench.stack(keys=2, RELAY_HISTORY_DSN=dsn, RELAY_UI_OPEN_VIEW="true",
                                 RELAY_LOG_LEVEL="WARNING")
        node = stack.start_ingress()
        with psycopg.connect(dsn) as conn:
            params = history_data.samples(conn, rounds)
            sql = history_data.timings(conn, history_data.queries(conn), params)
        session = requests.Session()

        def api(args: dict[str, str]) -> Any:
            reply = session.get(node + "/api/v1/events", params=args, timeout=30)
            reply.raise_for_status()
            return reply.json()["events"]

        def day(args: tuple[Any, Any, Any], name: str) -> dict[str, str]:
            return {name: args[0], "since": args[1].isoformat(), "until": args[2].isoformat()}

        finder = Finder(Settings.from_env(stack.env), stack.redis.client())
        http = history_data.timings(None, {  # type: ignore[arg-type]
            "dedup_key": lambda key: api({"dedup_key": key}),
            "sender": lambda args: api(day(args, "source")),
            "source": lambda args: api(day(args, "payload_source")),
            "page": lambda after: api({} if after is None else {
                "until": after[0].isoformat()}),
            "trace": lambda key: finder.search(Query(dedup_key=key, limit=0)),
        }, params)
        finder.record.close()  # type: ignore[union-attr]
        about = {"dedup_key": "a search by dedup_key (/api/v1/events?dedup_key=)",
                 "sender": "a sender's events over a day (?source=&since=&until=)",
                 "source": "a host's events over a day (?payload_source=&since=&until=)",
                 "page": "a page of the Events list (50, newest first, or ?until=)",
                 "trace": "an incident's trace (every event and step: pd-relay trace)"}
        for name, what in about.items():
            got = http[name]
            self.bench.record(f"H1. {count:,} events: {what}",
                              f"p99 {got['p99']:.1f} ms, p50 {got['p50']:.1f} ms "
                              f"({got['rows']:.0f} found on average; its SQL alone: p99 "
                              f"{sql[name]['p99']:.1f} ms), {rounds} runs", "p99 <= 50 ms")

    # -- export ----------------------------------------------------------------------------
    def export(self) -> None:
        dsn = self.database("export")
        bench = self.bench
        stack = bench.stack(keys=4, RELAY_LOG_LEVEL=bench.log_level, RELAY_THREADS=bench.threads,
                            RELAY_HISTORY_DSN=dsn)
        stack.history_migrate()
        nodes = [stack.start_ingress().removeprefix("http://") for _ in range(2)]
        url = stack.start_nginx(nodes, "nginx-history") + "/v2/enqueue"
        client = stack.redis.client()
        single = json.dumps(bench_event())
        from bench import wrk  # scripts/bench.py's (imported here: it imports this module)

        wrk(url, single, 2)  # warm up
        rates: dict[str, list[float]] = {"without": [], "with": []}
        lags: list[float] = []
        exporter = None
        seconds = 20 if self.goals else bench.seconds  # the goal's lag: over 20 s runs
        for _ in range(3 if bench.full else 2 if self.goals else 1):
            if exporter is not None:
                exporter.terminate()
            rates["without"].append(wrk(url, single, seconds)["rate"])
            exporter = stack.start_history_exporter()
            wait_until(lambda: lag_ms(client, NAMES, now_ms()) == 0, 120,
                       "the exporter to catch up before the round")
            sampler = Sampler(client)
            sampler.start()
            rates["with"].append(wrk(url, single, seconds)["rate"])
            sampler.stopped.set()
            sampler.join()
            lags += sampler.lags
        without, with_ = (statistics.median(rates[k]) for k in ("without", "with"))
        bench.record("H2. ingest, 1 event/request, with the exporter running",
                     f"{with_:,.0f} events/s = {with_ / without:.0%} of without it "
                     f"({without:,.0f} events/s), same stack, rounds interleaved",
                     ">= 95%")
        bench.record(f"H3. export's lag under that ingest ({seconds} s runs, sampled every "
                     "100 ms)",
                     f"p99 {p99(lags) / 1000:.2f} s, p50 {statistics.median(lags) / 1000:.2f}"
                     f" s, max {max(lags) / 1000:.2f} s, {len(lags)} samples", "p99 <= 2 s")
        print("  lag samples (ms): " + " ".join(f"{lag:.0f}" for lag in lags), flush=True)
        self.burst(stack, url, client, "the stream's default caps")
        if self.goals:  # the same on a stream whose byte cap holds the whole burst
            self.roomy_burst(dsn)

    def roomy_burst(self, dsn: str) -> None:
        stack = self.bench.stack(keys=4, RELAY_LOG_LEVEL=self.bench.log_level,
                                 RELAY_THREADS=self.bench.threads, RELAY_HISTORY_DSN=dsn,
                                 RELAY_HISTORY_MAX_MB=ROOMY_MB)
        nodes = [stack.start_ingress().removeprefix("http://") for _ in range(2)]
        url = stack.start_nginx(nodes, "nginx-history-roomy") + "/v2/enqueue"
        stack.start_history_exporter()
        client = stack.redis.client()
        wait_until(lambda: lag_ms(client, NAMES, now_ms()) is not None, 30,
                   "the exporter to make its group")
        self.burst(stack, url, client, f"RELAY_HISTORY_MAX_MB={ROOMY_MB}")

    def burst(self, stack: Any, url: str, client: Any, caps: str) -> None:
        count = 100_000 if self.goals else 20_000
        batch = json.dumps([bench_event()] * 100)
        session = requests.Session()

        def post(_: int) -> None:
            reply = session.post(url, data=batch, timeout=60,
                                 headers={"Content-Type": "application/json"})
            if reply.status_code != 202:
                raise RuntimeError(f"burst: {reply.status_code} {reply.text[:200]}")

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, range(count // 100)))
        sent = time.monotonic() - started
        wait_until(lambda: lag_ms(client, NAMES, now_ms()) == 0, 300,
                   "the exporter to commit the burst", every=0.1)
        done = time.monotonic() - started
        lost = int(client.hget(NAMES.history_export, "lost") or 0)
        self.bench.record(f"H4. a burst of {count:,} events in batches of 100 (4 clients),"
                          f" the exporter running, {caps}", f"all committed {done:.1f} s after its "
                          f"start (sent in {sent:.1f} s, {done - sent:.1f} s after its end); "
                          f"lost from the record {lost}", "<= 60 s")


class Sampler(threading.Thread):
    """The export's lag every 100 ms until stopped."""

    def __init__(self, client: Any) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.lags: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.lags.append(float(lag_ms(self.client, NAMES, now_ms()) or 0))


def bench_event() -> dict[str, Any]:
    from bench import EVENT

    return dict(EVENT)


def now_ms() -> int:
    return int(time.time() * 1000)


def p99(values: list[float]) -> float:
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
