"""The bench's ENQUEUE-per-keys measurement (issue 26), ``scripts/bench --only
enqueue-keys [--before REF]``: Redis's time per single-event ENQUEUE and the commands
it runs, with 3, 100, 500 and 1,000 keys in the keys file, interleaved in one run; with
``--before``, a release taken out of git (``REF``: a tag, a commit, a branch) is measured
in the same run, each key count of it next to this one's.

Each pass runs a child process of each release measured in turn (its tree first on
PYTHONPATH, as the upgrade drill runs a previous release): the ingress app in process
(Flask's test client, no HTTP) once per key count, each on its own database of the
bench's Redis, flushed first; 2,000 incidents opened in each (triggers with dedup_keys,
spread over the keys by their hash), then rounds of triggers of those incidents (each
call looks its incident up), the key counts' rounds interleaved (each round starting
with the next). Redis's own figures:
``INFO commandstats`` (``usec_per_call`` of EVALSHA; every command's calls, which count
those a script runs). Medians of rounds, then of passes (3, or 5 with ``--full``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

KEY_COUNTS = (3, 100, 500, 1000)
INCIDENTS = 2_000  # opened before the rounds: each key's set holds its share


def measure(rounds: int, calls: int) -> dict[int, dict[str, float]]:
    """In the child: the figures for each of KEY_COUNTS, their rounds interleaved (one
    app per key count, each on its own database of the bench's Redis: RELAY_REDIS_URL)."""
    import logging
    import tempfile

    import redis

    from relay.app import create_app
    from relay.keys import new_key
    from relay.settings import Settings

    logging.disable(logging.CRITICAL)
    url = os.environ["RELAY_REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    event: dict[str, Any] = {"event_action": "trigger", "payload": {
        "summary": "CPU load above 95% on web-01", "source": "web-01", "severity": "error"}}
    apps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for db, keys in enumerate(KEY_COUNTS):
            path = Path(tmp) / f"keys-{keys}.txt"
            path.write_text("\n".join(new_key() for _ in range(keys)) + "\n")
            path.chmod(0o600)
            env = dict(os.environ, RELAY_KEYS_FILE=str(path), RELAY_LOG_LEVEL="WARNING",
                       RELAY_ALLOW_ANONYMOUS="true",
                       RELAY_REDIS_URL=url + ("&" if "?" in url else "?") + f"db={db}")
            apps[keys] = create_app(Settings.from_env(env)).test_client()
            for n in range(INCIDENTS):
                body = dict(event, dedup_key=f"i{n}")
                assert apps[keys].post("/v2/enqueue", json=body).status_code == 202
    figures: dict[int, list[tuple[float, float]]] = {keys: [] for keys in KEY_COUNTS}
    for r in range(rounds):
        turn = r % len(KEY_COUNTS)  # each round starts with another key count
        for keys in KEY_COUNTS[turn:] + KEY_COUNTS[:turn]:
            app = apps[keys]
            client.config_resetstat()
            for n in range(calls):
                body = dict(event, dedup_key=f"i{(r * calls + n) * 7 % INCIDENTS}")
                assert app.post("/v2/enqueue", json=body).status_code == 202
            stats = client.info("commandstats")
            evalsha = stats["cmdstat_evalsha"]
            commands = sum(int(s["calls"]) for s in stats.values()) - int(evalsha["calls"])
            figures[keys].append((float(evalsha["usec_per_call"]),
                                  commands / int(evalsha["calls"])))
    client.flushall()
    return {keys: {"redis_us": statistics.median(f[0] for f in found),
                   "commands": statistics.median(f[1] for f in found)}
            for keys, found in figures.items()}


def run(env: dict[str, str], trees: dict[str, Path | None], full: bool
        ) -> list[tuple[str, str, str]]:
    """The parent (scripts/bench.py): each release in turn, a pass after another; rows
    for the bench's table."""
    passes, rounds, calls = (5, 10, 500) if full else (3, 6, 300)
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    for _ in range(passes):  # interleaved, so that drift hits all alike
        for name, tree in trees.items():
            child = dict(env, PYTHONPATH=str(tree), PYTHONSAFEPATH="1") if tree else env
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), str(rounds), str(calls)],
                env=child, capture_output=True, text=True, timeout=1800,
                cwd=tree or Path(__file__).resolve().parents[1], check=False)
            if out.returncode != 0:
                raise RuntimeError(f"enqueue-keys ({name}): {out.stderr[-2000:]}")
            got = json.loads(out.stdout.strip().splitlines()[-1])
            for keys in KEY_COUNTS:
                runs.setdefault((keys, name), []).append(got[str(keys)])
            print(f"  {name}: {got}", flush=True)
    found = {run: {figure: statistics.median(r[figure] for r in rs) for figure in rs[0]}
             for run, rs in runs.items()}
    rows = []
    for name in trees:
        base = found[KEY_COUNTS[0], name]["redis_us"]
        for keys in KEY_COUNTS:
            got = found[keys, name]
            rows.append((f"12. Redis time per single-event ENQUEUE, {keys:,} keys ({name})",
                         f"{got['redis_us']:,.1f} µs = {got['redis_us'] / base:.2f}x 3 keys;"
                         f" {got['commands']:.1f} commands a call in the script",
                         "1,000 keys <= 1.10x" if name == "this release" else "-"))
    return rows


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
