"""pd-relay benchmarks: one run, its own stack on loopback, figures side by side.

Run through ``scripts/bench [--full]`` (which sets up .venv). Results print as a
Markdown table and, with ``--write``, go to docs/BENCHMARKS.md with the machine, the
command and the date. Every measurement bounds its own time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import requests

from relay.auth import new_token
from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import HOST, Process, RedisServer, free_port, wait_until
from worker.lanes import Lanes

ROOT = Path(__file__).resolve().parents[1]

EVENT: dict[str, Any] = {
    "event_action": "trigger",
    "payload": {
        "summary": "CPU load above 95% on web-01 for 5 minutes",
        "source": "web-01.example.com",
        "severity": "critical",
        "component": "cpu",
        "group": "web-tier",
        "class": "cpu-load",
        "custom_details": {"load1": "7.9", "cores": "4"},
    },
}
EVENT_BYTES = len(json.dumps(EVENT, separators=(",", ":")))


def wrk(url: str, body: str, seconds: float, connections: int = 16,
        delay_ms: float = 0, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Run wrk against ``url`` POSTing ``body``; return req/s, p50, p99 (ms), errors."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    for name, value in (headers or {}).items():
        lua += f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n"
    if delay_ms:
        lua += f"function delay() return {delay_ms} end\n"
    script.write_text(lua)
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    script.unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out)[1]),  # type: ignore[index]
        "errors": float(non2xx[1]) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Bench:
    def __init__(self, full: bool, workdir: Path) -> None:
        self.full = full
        self.workdir = workdir
        self.seconds = 20 if full else 5
        self.results: list[tuple[str, str, str]] = []
        self.stacks: list[Stack] = []
        self.log_level = "INFO"  # the default: one "accepted" line per event
        self.threads = 8  # waitress threads per node (RELAY_THREADS), the same for both
        self.before = ""  # a release to measure beside this one (enqueue-keys)
        self.goals = False  # history: the sizes (--only history), not CI's

    def stack(self, **env: Any) -> Stack:
        stack = Stack(self.workdir / f"stack{len(self.stacks)}", **env)
        self.stacks.append(stack)
        return stack

    def record(self, name: str, figure: str, goal: str) -> None:
        self.results.append((name, figure, goal))
        print(f"  {name}: {figure} (goal: {goal})", flush=True)

    def close(self) -> None:
        for stack in self.stacks:
            stack.close()

    # -- 1, 2, 3: ingest -------------------------------------------------------------
    def ingest(self) -> None:
        stack = self.stack(keys=4, RELAY_LOG_LEVEL=self.log_level, RELAY_THREADS=self.threads)
        relay = [stack.start_ingress().removeprefix("http://") for _ in range(2)]
        relay_url = stack.start_nginx(relay, "nginx-relay") + "/v2/enqueue"
        bare_url = self.reference(stack, "bare")
        lpush_url = self.reference(stack, "lpush", stack.redis.url)
        auth_url, token = self.guarded()
        single = json.dumps(EVENT)
        urls = {"bare": bare_url, "lpush": lpush_url, "relay": relay_url, "auth": auth_url}
        headers = {"auth": {"X-API-Key": token}}
        for name, url in urls.items():
            wrk(url, single, 2, headers=headers.get(name))  # warm up
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for _ in range(3 if self.full else 1):  # interleaved, so drift hits all alike
            for name, url in urls.items():
                runs[name].append(wrk(url, single, self.seconds, headers=headers.get(name)))
        rate = {name: statistics.median(r["rate"] for r in rs) for name, rs in runs.items()}
        ceiling, lpush, ours = runs["bare"][0], runs["lpush"][0], runs["relay"][0]
        errors = sum(r["errors"] for r in runs["relay"])
        self.record("1. ingest, 1 event/request, bare Flask+waitress (ceiling)",
                    f"{rate['bare']:,.0f} req/s, p50 {ceiling['p50']:.1f} ms, "
                    f"p99 {ceiling['p99']:.1f} ms", "-")
        self.record("1. reference: the same + one redis-py LPUSH per request",
                    f"{rate['lpush']:,.0f} req/s = {rate['lpush'] / rate['bare']:.0%}, "
                    f"p50 {lpush['p50']:.1f} ms, p99 {lpush['p99']:.1f} ms", "-")
        self.record("1. ingest, 1 event/request, pd-relay",
                    f"{rate['relay']:,.0f} events/s, p50 {ours['p50']:.1f} ms, "
                    f"p99 {ours['p99']:.1f} ms, non-202: {errors:.0f}", "-")
        self.record("1. ratio pd-relay / ceiling", f"{rate['relay'] / rate['bare']:.0%}",
                    ">= 75%")
        guarded = runs["auth"][0]
        self.record("1. ingest with an API key and a 20-route file",
                    f"{rate['auth']:,.0f} events/s = {rate['auth'] / rate['relay']:.0%} of "
                    f"pd-relay without them, p99 {guarded['p99']:.1f} ms, non-202: "
                    f"{sum(r['errors'] for r in runs['auth']):.0f}", ">= 90%")

        batch = json.dumps([EVENT] * 100)
        batched = wrk(relay_url, batch, self.seconds, connections=8)
        self.record("2. ingest, 100 events/request", f"{batched['rate'] * 100:,.0f} events/s, "
                    f"p99 {batched['p99']:.1f} ms", ">= 20,000 events/s")

        steady = wrk(relay_url, single, self.seconds, connections=12, delay_ms=9)
        self.record("3. 202 latency at a steady ~1,000 events/s",
                    f"{steady['rate']:,.0f} events/s offered, p50 {steady['p50']:.1f} ms, "
                    f"p99 {steady['p99']:.1f} ms", "p99 <= 20 ms")
        stack.close()

    def keys_ingest(self) -> None:
        """Ingest and ENQUEUE's Redis time with 3, 100, 500 and 1,000 keys in the keys file:
        one ingress node each, wrk straight at it (no nginx), single events naming the
        first key, the four interleaved so that drift hits all alike."""
        counts = (3, 100, 500, 1000)
        urls, stacks = {}, {}
        for count in counts:
            stack = stacks[count] = self.stack(keys=count, RELAY_LOG_LEVEL=self.log_level,
                                               RELAY_THREADS=self.threads)
            urls[count] = stack.start_ingress() + "/v2/enqueue"
        bodies = {n: json.dumps(dict(EVENT, routing_key=stacks[n].keys[0])) for n in counts}
        for count in counts:
            wrk(urls[count], bodies[count], 2)  # warm up
        rates: dict[int, list[float]] = {n: [] for n in counts}
        micros: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(3 if self.full else 2):
            for count in counts:
                client = redis.Redis.from_url(stacks[count].redis.url)
                client.config_resetstat()
                rates[count].append(wrk(urls[count], bodies[count], self.seconds)["rate"])
                stats = client.info("commandstats").get("cmdstat_evalsha", {})
                micros[count].append(float(stats.get("usec_per_call", 0)))
                client.close()
        rate = {n: statistics.median(rates[n]) for n in counts}
        micro = {n: statistics.median(micros[n]) for n in counts}
        for count in counts:
            self.record(f"1b. ingest with {count:,} keys, 1 node, no nginx",
                        f"{rate[count]:,.0f} events/s = {rate[count] / rate[3]:.0%} of 3 keys; "
                        f"Redis {micro[count]:.0f} us per ENQUEUE = "
                        f"{micro[count] / micro[3]:.0%} of 3 keys",
                        ">= 90% of 3 keys" if count == 1000 else "-")
        for stack in stacks.values():
            stack.close()

    def replicas(self) -> None:
        """What a 202 confirmed on a replica costs (issue 27): one ingress node with
        RELAY_MIN_REPLICAS=1 beside one with 0, both on the same primary with one replica,
        wrk straight at each (no nginx), single events then 100-event batches, the two
        interleaved so that drift hits both alike."""
        # caps far above what the runs send (~450,000 events): a queue full would answer
        # 503 at once, a faster answer than a stored one (first seen as "116%")
        stack = self.stack(keys=4, RELAY_LOG_LEVEL=self.log_level, RELAY_THREADS=self.threads,
                           RELAY_QUEUE_MAX_EVENTS=2_000_000, RELAY_QUEUE_MAX_MB=2048,
                           RELAY_QUEUES_MAX_MB=8192)
        (stack.workdir / "replica").mkdir()
        replica = RedisServer(stack.workdir / "replica", stack.logs)
        replica.start("--replicaof", HOST, str(stack.redis.port))
        wait_until(lambda: replica.client().info("replication").get("master_link_status")
                   == "up", 30, "the replica to follow the primary")
        urls = {}
        for confirmed in (0, 1):
            stack.env["RELAY_MIN_REPLICAS"] = str(confirmed)
            urls[confirmed] = stack.start_ingress() + "/v2/enqueue"
        single, batch = json.dumps(EVENT), json.dumps([EVENT] * 100)
        runs: dict[tuple[int, str], list[dict[str, float]]] = {}
        for url in urls.values():
            wrk(url, single, 2)  # warm up
        for _ in range(3 if self.full else 2):
            for body, connections in ((single, 16), (batch, 8)):
                for confirmed, url in urls.items():
                    runs.setdefault((confirmed, body[:1]), []).append(
                        wrk(url, body, self.seconds, connections=connections))
        for shape, per, goal in (("{", 1, "within 15%"), ("[", 100, "within 10%")):
            rate = {n: statistics.median(r["rate"] for r in runs[(n, shape)]) * per
                    for n in (0, 1)}
            p99 = {n: statistics.median(r["p99"] for r in runs[(n, shape)]) for n in (0, 1)}
            errors = {n: sum(r["errors"] for r in runs[(n, shape)]) for n in (0, 1)}
            self.record(f"1c. ingest, {per} event(s)/request, a 202 confirmed on 1 replica "
                        "(WAIT)",
                        f"{rate[1]:,.0f} events/s = {rate[1] / rate[0]:.0%} of "
                        f"{rate[0]:,.0f} unconfirmed; p99 {p99[1]:.1f} ms against "
                        f"{p99[0]:.1f} ms; non-202: {errors[1]:.0f} and {errors[0]:.0f}", goal)
        replica.kill()
        stack.close()

    def guarded(self) -> tuple[str, str]:
        """A second relay that takes events only with an API key, routing them through a
        routes file of 20 routes (the event matches the last); returns its URL and key."""
        token, digest = new_token()
        routes = [{"name": f"team-{n}", "keys": [f"key-{n % 4 + 1}"],
                   "match": [f'custom_details.team="team-{n}"', 'severity>="error"']}
                  for n in range(19)]
        routes.append({"name": "web", "match": ['source=~"web-.*"', 'severity>="warning"'],
                       "keys": ["key-1", "key-2", "key-3", "key-4"]})
        path = self.workdir / "routes-20.yml"
        path.write_text(json.dumps({"sources": [{"name": "bench", "api_keys": [digest]}],
                                    "routes": routes}))
        path.chmod(0o600)
        stack = self.stack(keys=4, RELAY_LOG_LEVEL=self.log_level, RELAY_THREADS=self.threads,
                           RELAY_ALLOW_ANONYMOUS="false", RELAY_ROUTES_FILE=str(path))
        nodes = [stack.start_ingress().removeprefix("http://") for _ in range(2)]
        return stack.start_nginx(nodes, "nginx-guarded") + "/v2/enqueue", token

    def reference(self, stack: Stack, name: str, *args: str) -> str:
        """Two nodes of scripts/bare_app.py behind their own nginx; returns its URL."""
        nodes = []
        for _ in range(2):
            port = free_port()
            argv = [sys.executable, str(ROOT / "scripts" / "bare_app.py"), str(port),
                    str(self.threads), *args]
            stack.processes.append(Process(f"{name}-{port}", argv, stack.env, stack.logs))
            nodes.append(f"{HOST}:{port}")
            wait_until(lambda p=port: requests.get(f"http://{HOST}:{p}/healthz", timeout=1).ok,
                       15, f"the {name} app")
        return stack.start_nginx(nodes, f"nginx-{name}") + "/v2/enqueue"

    # -- 4: drain --------------------------------------------------------------------
    def drain(self) -> None:
        keys, limit = 4, 120
        window = 60.0 if self.full else 10.0
        limit = 120 if self.full else 20
        windows = 3 if self.full else 2
        stack = self.stack(keys=keys, RELAY_RATE_PER_MIN=limit, RELAY_RATE_WINDOW_S=window,
                           RELAY_LOG_LEVEL="WARNING")
        stack.start_simulator(limit=limit, window_s=window)
        stack.start_ingress()
        backlog = keys * limit * (windows + 1)
        for start in range(0, backlog, 100):
            events = [dict(EVENT, dedup_key=f"drain-{n}") for n in range(start, start + 100)]
            assert stack.post(events).status_code == 202
        for index in range(keys):
            stack.start_worker(index)
            stack.start_worker(index)
        time.sleep(windows * window + 2)
        seen = stack.sim_get("events")["events"]
        first = min(e["at"] for e in seen)
        in_span = [e for e in seen if e["at"] < first + windows * window]
        delivered = sum(1 for e in in_span if e["status"] == 202)
        throttled = sum(1 for e in in_span if e["status"] == 429)
        budget = keys * limit * windows
        self.record(
            f"4. drain: {keys} keys x {limit}/{window:.0f}s window, {windows} windows, "
            "2 workers/key",
            f"{delivered}/{budget} = {delivered / budget:.1%} of budget, "
            f"429s {throttled} ({throttled / max(1, len(in_span)):.1%})",
            ">= 97%, 429s <= 1%",
        )
        stack.close()

    # -- 5: end-to-end latency -------------------------------------------------------
    def latency(self) -> None:
        stack = self.stack(keys=4, RELAY_RATE_PER_MIN=1_000_000, RELAY_LOG_LEVEL="WARNING")
        stack.start_simulator()
        stack.start_ingress()
        for index in range(4):
            stack.start_worker(index)
        time.sleep(1)
        count = 400 if self.full else 150
        answered: dict[str, float] = {}
        for n in range(count):
            dedup_key = f"lat-{n}"
            reply = stack.post(dict(EVENT, dedup_key=dedup_key))
            answered[dedup_key] = time.time()
            assert reply.status_code == 202
            time.sleep(0.02)
        wait_until(lambda: len(stack.delivered()) >= count, 30, "every event")
        waits = sorted(max(0.0, e["at"] - answered[e["dedup_key"]]) * 1000
                       for e in stack.delivered())
        p50 = waits[len(waits) // 2]
        p99 = waits[int(len(waits) * 0.99) - 1]
        self.record("5. end to end, 202 to arrival at PagerDuty, no backlog",
                    f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({count} events)", "p99 <= 50 ms")
        stack.close()

    # -- 6: memory -------------------------------------------------------------------
    def memory(self) -> None:
        stack = self.stack(keys=1, RELAY_LOG_LEVEL="WARNING")
        stack.start_ingress()
        client = stack.redis.client()
        count = 20_000
        before = int(client.info("memory")["used_memory"])
        for start in range(0, count, 500):
            events = [dict(EVENT, dedup_key=f"mem-{n:06d}") for n in range(start, start + 500)]
            assert stack.post(events).status_code == 202
        after = int(client.info("memory")["used_memory"])
        self.record(f"6. Redis memory per queued event ({EVENT_BYTES}-byte event + 10-character "
                    "dedup_key)", f"{(after - before) / count:,.0f} bytes", "<= 700 bytes")
        # the same events sorted into the lanes by a worker (storm mode), each its own
        # incident: the worst case, one pending entry per event
        lanes = Lanes(client, Names(), key_id(stack.keys[0]),
                      replace(Settings(), storm_mode="always"), "key-1")
        while lanes.take(take=False).unsorted:
            pass
        sorted_ = int(client.info("memory")["used_memory"])
        self.record("6. the same, sorted into lanes by severity (storm mode; every event its "
                    "own incident)", f"{(sorted_ - before) / count:,.0f} bytes", "<= 700 bytes")
        stack.close()

    # -- 7: idle CPU -----------------------------------------------------------------
    def idle(self) -> None:
        stack = self.stack(keys=1)
        stack.start_ingress()
        worker = stack.start_worker(0)
        ingress = stack.processes[-2]
        time.sleep(3)
        hz = os.sysconf("SC_CLK_TCK")
        pids = {"ingress": ingress.popen.pid, "worker": worker.popen.pid}
        start = {name: cpu_ticks(pid) for name, pid in pids.items()}
        time.sleep(10)
        used = {name: (cpu_ticks(pid) - start[name]) / hz / 10 for name, pid in pids.items()}
        self.record("7. idle CPU over 10 s", ", ".join(
            f"{name} {share:.2%}" for name, share in used.items()), "< 1% each")
        stack.close()


    # -- 8: CPU per request, in process ------------------------------------------------
    def cost(self) -> None:
        """The ingress's own CPU per request (Flask's test client in this process: no
        HTTP, no nginx) and Redis's time per ENQUEUE call, medians of rounds. Steadier
        than wrk's rates on a shared machine: the figure to compare two versions with
        (run each, e.g. an old commit with PYTHONPATH pointing at its worktree)."""
        import logging

        from relay.app import create_app
        from relay.settings import Settings

        stack = self.stack(keys=4, RELAY_LOG_LEVEL="WARNING")
        routes = stack.workdir / "routes.yml"  # a channel hears of every event (issue 13)
        routes.write_text("channels:\n  - {name: chat, type: slack, url: 'http://127.0.0.1:9/'}\n"
                          "routes:\n  - {name: all, keys: [key-1, key-2, key-3, key-4], "
                          "channels: [chat]}\n")
        routes.chmod(0o600)
        logging.disable(logging.WARNING)  # the open-relay warning, per request
        redis = stack.redis.client()
        for heard in (False, True):
            env = dict(stack.env, RELAY_ROUTES_FILE=str(routes)) if heard else stack.env
            client = create_app(Settings.from_env(env)).test_client()
            rounds: dict[int, list[tuple[float, float]]] = {1: [], 100: []}
            for _ in range(5 if self.full else 3):
                for size, count in ((1, 2000), (100, 100)):
                    body = EVENT if size == 1 else [EVENT] * size
                    redis.config_resetstat()
                    started = time.process_time()
                    for _ in range(count):
                        assert client.post("/v2/enqueue", json=body).status_code == 202
                    python_us = (time.process_time() - started) / count * 1e6
                    stats = redis.info("commandstats")["cmdstat_evalsha"]
                    rounds[size].append((python_us, float(stats["usec_per_call"])))
            for size, figures in rounds.items():
                python_us = statistics.median(f[0] for f in figures)
                redis_us = statistics.median(f[1] for f in figures)
                self.record(f"8. CPU per request of {size} event(s), in process"
                            + (", a channel hears of each" if heard else ""),
                            f"ingress {python_us:,.0f} µs, Redis {redis_us:,.1f} µs per ENQUEUE",
                            "-")
            redis.delete(*redis.keys("pdr:*"))  # the next variant starts from empty queues
        logging.disable(logging.NOTSET)
        stack.close()


    # -- 12: ENQUEUE's Redis time by the number of keys (issue 26) -----------------------
    def enqueue_keys(self) -> None:
        """scripts/bench_keys.py: with ``--before REF``, that release in the same run."""
        import bench_keys  # (scripts/ is the script's directory: first on sys.path)

        stack = self.stack(keys=1)
        trees: dict[str, Path | None] = {}
        if self.before:
            trees[self.before] = self.take_out(self.before)
        trees["this release"] = None
        for row in bench_keys.run(stack.env, trees, self.full):
            self.record(*row)
        stack.close()

    def take_out(self, ref: str) -> Path:
        """The source of ``ref`` taken out of this clone's git into the bench's directory."""
        into = self.workdir / f"tree-{len(list(self.workdir.glob('tree-*')))}"
        into.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True,
                                 check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
        return into

    # -- 11: what a refusal costs (issue 23) -------------------------------------------
    def refusals(self) -> None:
        """CPU per 401 for a 512 KB body (no credentials; an unknown API key) against a
        1-event 202 and against parsing that body (the work a 401 did before it came
        first), in process; and the strict parser against a plain json.loads."""
        import logging

        from relay.app import create_app
        from relay.body import parse_body

        stack = self.stack(keys=4, RELAY_LOG_LEVEL="WARNING")
        token, token_hash = new_token()
        routes = stack.workdir / "routes.yml"  # a source: anonymous senders refused
        routes.write_text(f'sources:\n  - {{name: ci, api_keys: ["{token_hash}"]}}\n')
        routes.chmod(0o600)
        logging.disable(logging.WARNING)
        client = create_app(Settings.from_env(dict(stack.env, RELAY_ROUTES_FILE=str(routes),
                                                 RELAY_ALLOW_ANONYMOUS="false"))
                            ).test_client()
        labels = {f"label{n}": f"value{n}" for n in range(13)}  # 1,000 events of 503 bytes
        wide = dict(EVENT, payload=dict(EVENT["payload"], custom_details=labels))
        events = json.dumps([wide] * 1000).encode()  # valid, but no routing key in it
        empty = ('{"x": [' + ",".join(["{}"] * 169_995) + "]}").encode()  # nothing but objects
        assert 500_000 < len(events) < 512_000 and 500_000 < len(empty) < 512_000

        def cpu_ms(action: Any, count: int) -> float:
            rounds = []
            for _ in range(7 if self.full else 5):
                started = time.process_time()
                for _ in range(count):
                    action()
                rounds.append((time.process_time() - started) / count * 1000)
            return statistics.median(rounds)

        def post(body: Any, status: int, **headers: str) -> Any:
            def send() -> None:
                reply = client.post("/v2/enqueue", data=body, headers=headers,
                                    content_type="application/json")
                assert reply.status_code == status, reply.json
            return send

        one = json.dumps(dict(EVENT, routing_key=stack.keys[0])).encode()
        accepted = cpu_ms(post(one, 202), 500)
        self.record("11. reference: CPU per 202 of 1 event, in process", f"{accepted:.2f} ms",
                    "-")
        for name, body in (("events", events), ("empty objects", empty)):
            anonymous = cpu_ms(post(body, 401), 100)
            unknown = cpu_ms(post(body, 401, **{"X-API-Key": "pdr_guess"}), 100)
            strict = cpu_ms(lambda b=body: parse_body("application/json", None, b), 10)
            plain = cpu_ms(lambda b=body: json.loads(b), 10)
            self.record(f"11. CPU per 401 of 512 KB of {name}: no credentials / unknown "
                        "API key", f"{anonymous:.2f} ms / {unknown:.2f} ms "
                        f"({anonymous / accepted:.1f}x / {unknown / accepted:.1f}x a 202)",
                        "< 2 ms")
            self.record("11. parse of that body: strict parser / plain json.loads",
                        f"{strict:.1f} ms / {plain:.1f} ms ({strict / plain:.1f}x; the strict "
                        f"parse is {strict / anonymous:.0f}x the 401)", "-")
        logging.disable(logging.NOTSET)
        stack.close()

    # -- 10: an alert storm (issue 15) -------------------------------------------------
    def storm(self) -> None:
        """Time to page for critical triggers behind a storm of repeats (scripts/storm.py),
        PagerDuty's time scaled down (short: 10x, full: 2x); reported in its seconds."""
        import storm

        scale = 2.0 if self.full else 10.0
        for mode in ("off", "backlog", "always"):
            found = storm.run(self.workdir / f"storm-{mode}", scale, RELAY_STORM_MODE=mode,
                              RELAY_STORM_AFTER_S=Settings().storm_after_s,
                              RELAY_STORM_AGE_S=Settings().storm_age_s)
            self.record(f"10. storm, mode {mode} ({scale:g}x time): critical triggers' time "
                        "to page", f"p50 {found['critical_p50_s']:.0f} s, p99 "
                        f"{found['critical_p99_s']:.0f} s ({found['critical_paged']} paged)",
                        "p99 <= 30 s with storm mode")
            self.record(f"10. storm, mode {mode}: requests at PagerDuty, backlog gone after",
                        f"{found['requests']:,} for {found['offered']:,} events offered "
                        f"({found['refused']} refused), {found['drained_s']:.0f} s",
                        "half the requests with storm mode")
            self.record(f"10. storm, mode {mode}: Redis's longest script call",
                        f"{found['longest_script_ms']:.1f} ms ({found['longest_script']}); "
                        f"{found['scripts_over_5ms']} of {found['script_calls']:,} calls 5 ms "
                        "or more", "< 5 ms")
            self.record(f"10. storm, mode {mode}: out of order, lost",
                        f"{found['out_of_order']}, {found['lost']}", "0, 0")

    # -- channels in a storm (issue 30) -----------------------------------------------
    def channels(self) -> None:
        """1,000 triggers on one route telling a paced chat channel and a digest channel
        (scripts/channels_bench.py): what each chat receives."""
        import channels_bench

        seconds = 90.0 if self.full else 40.0
        found = channels_bench.run(self.workdir / "channels", seconds,
                                   follow_s=240.0 if self.full else 0.0)
        self.record(f"channels: 1,000 triggers on one route over {channels_bench.STORM_S:g} s, "
                    "PagerDuty took them in",
                    f"{found['pagerduty_s']:.1f} s (posted in {found['posted_s']:.1f} s)", "-")
        self.record(f"channels: a Slack channel at 60/min, messages in {seconds:.0f} s; the "
                    "most in any 60 s", f"{found['plain_sent']}; {found['plain_most_60s']}",
                    "<= 60 in any 60 s")
        if self.full:
            self.record("channels: the Slack channel, triggers it was told of (a message each, "
                        "or counted in a digest while it was behind); digests; all told after",
                        f"{found['plain_counted']:,} of {found['events']:,}; "
                        f"{found['plain_digests']}; " + (
                            "-" if found["plain_all_s"] is None
                            else f"{found['plain_all_s']:.0f} s"), "all")
        if not found["digest"]:
            self.record("channels: a digest: 3s channel", "not run: this tree does not gather "
                        "digests", "<= 1 message per period")
            self.record("channels: the channel worker's CPU",
                        f"{found['channel_worker_cpu_s']:.1f} s", "-")
            return
        self.record(f"channels: a digest: {channels_bench.DIGEST_S:g}s channel, messages; the "
                    "most in any period; shortest gap",
                    f"{found['digests']}; {found['digest_most_per_period']}; "
                    + ("-" if found["digest_gap_s"] is None else f"{found['digest_gap_s']:.1f} s"),
                    "<= 1 per period")
        self.record("channels: triggers its digests counted", f"{found['digest_counted']:,} of "
                    f"{found['events']:,}", "all")
        self.record("channels: notices left in the outbox; dispatcher rounds held by RQ's "
                    "bound; the channel worker's CPU", f"{found['outbox_left']:,}; "
                    f"{found['dispatch_held']:,}; {found['channel_worker_cpu_s']:.1f} s", "-")
        self.record("channels: notices waiting in gatherings for a digest at the end",
                    channels_bench.gathered_text(found["gathered"]), "-")

    def channels_storm(self) -> None:
        """The storm of measurement 10 in the default storm mode, its route telling both
        channels, beside the same storm without them (compare with the storm rounds)."""
        import channels_bench
        import storm

        scale = 2.0 if self.full else 10.0
        mode = Settings().storm_mode
        env = {"RELAY_STORM_MODE": mode, "RELAY_STORM_AFTER_S": Settings().storm_after_s,
               "RELAY_STORM_AGE_S": Settings().storm_age_s}
        for label, found in (
                ("without channels", storm.run(self.workdir / "storm-plain", scale, **env)),
                ("with channels", channels_bench.storm_with_channels(
                    self.workdir / "storm-channels", scale, **env))):
            self.record(f"channels: storm, mode {mode} ({scale:g}x time), {label}: critical "
                        "triggers' time to page; requests at PagerDuty",
                        f"p50 {found['critical_p50_s']:.0f} s, p99 "
                        f"{found['critical_p99_s']:.0f} s; {found['requests']:,} for "
                        f"{found['offered']:,} events", "as without channels")
            self.record(f"channels: storm, {label}: out of order, lost; backlog gone after",
                        f"{found['out_of_order']}, {found['lost']}; {found['drained_s']:.0f} s"
                        + (f" ({found['channel_messages']:,} chat messages; the channel "
                           f"worker {found['channel_worker_cpu_s']:.1f} s of CPU; "
                           f"{found['outbox_left']:,} notices left in the outbox; "
                           "waiting in gatherings: "
                           f"{channels_bench.gathered_text(found['gathered'])}"
                           + (f"; {found['digest_counted']:,} triggers in digests"
                              if found["digest"] else "") + ")"
                           if "channel_messages" in found else ""), "0, 0")

    # -- many keys' delivery (issue 26) ------------------------------------------------
    def keys_delivery(self) -> None:
        """500 keys with a backlog delivered by two worker processes, PagerDuty's window
        scaled down with its limit (20 per 10 s: its 2 sends a second per key); and two
        processes serving 1,000 keys idle (scripts/keys_delivery.py)."""
        import keys_delivery

        found = keys_delivery.delivery(self.workdir / "keys-delivery", keys=500,
                                       processes=2, limit=20, window_s=10.0,
                                       windows=3 if self.full else 2)
        self.record("keys: 500 keys' backlog, 2 worker processes: budget used per key "
                    "(min / median), 429s", f"{found['budget_min']:.0%} / "
                    f"{found['budget_median']:.0%}, {found['throttled']} "
                    f"({found['sends_per_s']:.0f} sends/s)", ">= 97% each, 0")
        self.record("keys: the 2 processes' RSS and CPU, delivering",
                    f"{' + '.join(f'{mb:.0f}' for mb in found['rss_mb'])} MB, "
                    f"{' + '.join(f'{cpu:.0%}' for cpu in found['cpu'])} of a core", "-")
        idle = keys_delivery.idle(self.workdir / "keys-idle", keys=1000, processes=2)
        self.record("keys: 1,000 keys, 2 worker processes idle: RSS, CPU each",
                    f"{' + '.join(f'{mb:.0f}' for mb in idle['rss_mb'])} MB, "
                    f"{' / '.join(f'{cpu:.2%}' for cpu in idle['cpu'])}",
                    "<= 400 MB in all, < 1% each")

    # -- 12: memory kept per held-back event (issue 23) --------------------------------
    def held(self) -> None:
        """Redis's growth per event a `drop` route holds back (half with a dedup_key each,
        half without), in rounds through the app in process against a real Redis: the
        first round costs the stories and the held incidents; once the caps are reached
        (here RELAY_INCIDENTS_MAX 10,000 and RELAY_HISTORY_MAX_MB 2, to reach them soon),
        a round adds nothing per event."""
        import logging

        from relay.app import create_app
        from relay.settings import Settings

        stack = self.stack(keys=1, RELAY_LOG_LEVEL="WARNING", RELAY_INCIDENTS_MAX="10000",
                           RELAY_HISTORY_MAX_MB="2")
        routes = stack.workdir / "routes.yml"
        routes.write_text("routes:\n  - {name: noise, match: ['severity=\"info\"'], "
                          "drop: true}\n")
        routes.chmod(0o600)
        logging.disable(logging.WARNING)
        client = create_app(Settings.from_env(dict(
            stack.env, RELAY_ROUTES_FILE=str(routes)))).test_client()
        redis = stack.redis.client()
        per_round, size, grew = 20_000, 500, []
        for round_ in range(4 if self.full else 3):
            before = int(redis.info("memory")["used_memory"])
            for start in range(0, per_round, size):
                body = [{"event_action": "trigger", "payload": {
                    "summary": f"noise {n}", "source": "ci", "severity": "info"},
                    **({"dedup_key": f"noise-{round_}-{n}"} if n % 2 else {})}
                    for n in range(start, start + size)]
                assert client.post("/v2/enqueue", json=body).status_code == 202
            grew.append((int(redis.info("memory")["used_memory"]) - before) / per_round)
        logging.disable(logging.NOTSET)
        self.record("12. Redis bytes kept per held-back event, by round of 20,000",
                    ", ".join(f"{b:,.0f}" for b in grew), "bounded: about 0 once capped")
        stack.close()

    # -- 13: heartbeats (issue 28) -------------------------------------------------------
    def heartbeats(self) -> None:
        """scripts/heartbeats_bench.py: a ping against a single-event ingest in the same
        run; Redis's busy time per evaluation round of 10,000 checks; deadline to page and
        late ping to resolve over many short checks."""
        import heartbeats_bench as hb

        cost = hb.ping_cost(self.workdir / "hb-cost", wrk, EVENT, self.seconds,
                            3 if self.full else 2, self.threads)
        self.record("13. heartbeats: a ping (POST /ping/NAME, API key) against a 1-event "
                    "ingest (API key), 1 node, no nginx",
                    f"ping {cost['ping_rate']:,.0f}/s, p50 {cost['ping_p50']:.1f} ms, Redis "
                    f"{cost['ping_redis_us']:.0f} µs a request; ingest "
                    f"{cost['ingest_rate']:,.0f}/s, "
                    f"p50 {cost['ingest_p50']:.1f} ms, Redis {cost['ingest_redis_us']:.0f} µs; "
                    f"ping/ingest rate {cost['ping_rate'] / cost['ingest_rate']:.0%}, Redis "
                    f"{cost['ping_redis_us'] / cost['ingest_redis_us']:.0%}; non-2xx "
                    f"{cost['ping_errors']:.0f}, {cost['ingest_errors']:.0f}",
                    "rate >= 100% of ingest (costs at most as much)")
        found = hb.evaluation(self.workdir / "hb-eval", 10_000)
        self.record("13. heartbeats: 10,000 checks, Redis busy per evaluation round",
                    f"nothing due {found['idle_busy_ms']:.2f} ms; a 60th turning late each "
                    f"second: median {found['late_busy_ms']:.1f} ms, worst "
                    f"{found['late_worst_ms']:.1f} ms (longest call "
                    f"{found['late_longest_ms']:.1f} ms)", "<= 10 ms per round")
        self.record("13. heartbeats: 10,000 checks all past their grace at once",
                    f"first round {found['down_first_ms']:.0f} ms (longest call "
                    f"{found['down_longest_ms']:.0f} ms), then median "
                    f"{found['down_median_ms']:.1f} ms; {found['down_rounds']} rounds to hand "
                    f"on {found['paged']:,} pages", "<= 10 ms per round")
        checks = 400 if self.full else 100
        late = hb.latency(self.workdir / "hb-latency", checks, 4.0, 2.0)
        (p50, p99), (a50, a99) = late["page_stored"], late["page_arrived"]
        self.record(f"13. heartbeats: expected time + grace to the page ({late['checks']} "
                    "checks, period 4 s, grace 2 s)",
                    f"stored p50 {p50:.2f} s, p99 {p99:.2f} s; at PagerDuty p50 {a50:.2f} s, "
                    f"p99 {a99:.2f} s ({late['paged']} paged)", "p99 <= 5 s")
        (p50, p99), (a50, a99) = late["resolve_stored"], late["resolve_arrived"]
        self.record("13. heartbeats: a late ping to its resolve",
                    f"stored p50 {p50:.2f} s, p99 {p99:.2f} s; at PagerDuty p50 {a50:.2f} s, "
                    f"p99 {a99:.2f} s ({late['resolved']} resolved)", "p99 <= 5 s")

    # -- 9: instructions per request ---------------------------------------------------
    def history(self) -> None:
        """The record in PostgreSQL (issue 29): scripts/history_bench.py."""
        import history_bench

        from relay.errors import ConfigError
        from relay.stack.postgres import binaries

        try:
            binaries()
        except ConfigError as exc:  # scripts/test installs it as root; elsewhere, say so
            self.record("H. the record in PostgreSQL", f"skipped: {exc}", "-")
            return
        history_bench.HistoryBench(self, self.goals or self.full).run()

    def instructions(self) -> None:
        """The ingress's instructions per single-event request, counted by valgrind's
        callgrind (the same count on every run of the same code and inputs, whatever else
        the machine does): N and 3N requests, each in a fresh process, the difference
        over 2N. Compare versions by running this with PYTHONPATH at another worktree."""
        name = "9. ingress instructions per 1-event request (callgrind)"
        if not shutil.which("valgrind"):
            self.record(name, "not measured: valgrind is not installed", "-")
            return
        stack = self.stack(keys=1)
        counts = []
        for n in (200, 600):
            run = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                 sys.executable, "-c", COUNTED, str(n), stack.redis.url],
                capture_output=True, text=True, timeout=900, check=True)
            counts.append(int(re.findall(r"Collected : (\d+)", run.stderr)[-1]))
        self.record(name, f"{(counts[1] - counts[0]) / 400:,.0f}", "-")


# What ``instructions`` counts: argv N and a Redis URL; single-event requests through the
# Flask app in process (no HTTP), on a key made up here.
COUNTED = """
import logging, sys
from relay.app import create_app
from relay.keys import new_key
from relay.settings import Settings
logging.disable(logging.WARNING)
settings = Settings(routing_keys=(new_key(),), redis_url=sys.argv[2], allow_anonymous=True)
client = create_app(settings).test_client()
event = {"event_action": "trigger", "dedup_key": "bench",
         "payload": {"summary": "bench event", "source": "bench", "severity": "info"}}
for _ in range(int(sys.argv[1])):
    assert client.post("/v2/enqueue", json=event).status_code == 202
"""


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{nginx.replace('nginx version: ', '')}, wrk 4.1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="longer, repeated runs")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    parser.add_argument("--log-level", default="INFO", help="ingress log level for ingest")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads per node")
    parser.add_argument("--only", nargs="*", default=[],
                        choices=["ingest", "keys-ingest", "drain", "latency", "memory", "idle",
                                 "cost", "instructions", "storm", "held", "refusals",
                                 "keys-delivery", "enqueue-keys", "replicas",
                                 "heartbeats", "history", "channels", "channels-storm"])
    parser.add_argument("--before", default="", metavar="REF",
                        help="enqueue-keys: measure this git ref's release in the same run")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin"):
            print(f"bench: {tool} is missing (scripts/bench installs it when run as root)")
            return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pd-relay-bench-") as tmp:
        bench = Bench(args.full, Path(tmp))
        bench.log_level = args.log_level
        bench.threads = args.threads
        bench.before = args.before
        bench.goals = "history" in args.only
        try:
            for name in args.only or ["ingest", "keys-ingest", "replicas", "drain", "latency",
                                      "memory", "idle", "cost", "held", "refusals",
                                      "heartbeats", "history", "channels"]:
                print(f"{name}...", flush=True)
                getattr(bench, name.replace("-", "_"))()
        finally:
            bench.close()
    mode = "full" if args.full else "short"
    if args.only == ["history"]:  # its own block in docs/BENCHMARKS.md, the goals' sizes
        mode += " history"
    publish("bench", mode, started, f"Machine: {machine()}.",
            ["Measurement", "Result", "Goal"], bench.results, args.write)
    return 0


def publish(kind: str, mode: str, started: float, about: str, header: list[str],
            rows: list[Any], write: bool) -> None:
    """Print a run's report (heading, command, duration, ``about``, a Markdown table of
    ``rows``) and, with ``write``, put it in docs/BENCHMARKS.md (``write_report``)."""
    title = "" if kind == "bench" else "drills, "
    command = f"scripts/{kind} " + " ".join(sys.argv[1:])
    table = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    table += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    report = (
        f"## {title}{mode} run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Command: `{command.strip()}` ({time.monotonic() - started:.0f} s). {about}\n\n"
        + "\n".join(table) + "\n"
    )
    print("\n" + report)
    if write:
        write_report(f"{kind}:{mode}", report)


def write_report(name: str, report: str) -> None:
    """Put ``report`` in docs/BENCHMARKS.md between ``<!-- name -->`` markers, replacing
    the block of the same name or appending one."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else ""
    marker = f"<!-- {name} -->"
    block = f"{marker}\n{report}{marker}\n"
    if marker in text:
        text = re.sub(f"{re.escape(marker)}.*?{re.escape(marker)}\n", lambda _: block,
                      text, flags=re.S)
    else:
        text += "\n" + block
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
