"""What the worker's WAIT costs per send (issue 27): a primary with ``--replicas``
replicas and Sentinels on loopback (relay.stack.sentinels), a key's lease held, then
``--rounds`` rounds of the fence's Redis part alone: the lease renewal (what a send
costs with RELAY_MIN_REPLICAS=0) against the renewal and WAIT in one pipeline (with
RELAY_MIN_REPLICAS=1), interleaved; prints each one's median and the difference in us.

    .venv/bin/python scripts/wait_cost.py [--rounds 3000] [--replicas 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from relay.names import Names
from relay.scripts import Scripts
from relay.settings import Settings
from relay.stack.sentinels import SentinelGroup
from relay.store import connect
from worker.lease import Lease


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wait-cost-"))
    group = SentinelGroup(work / "group", work / "logs", replicas=args.replicas)
    try:
        group.start()
        client = connect(Settings(redis_url=group.url, min_replicas=1))
        names = Names()
        lease = Lease(client, Scripts(client), names.lease("bench"), names.workers("bench"),
                      "bench-worker", 15.0)
        assert lease.acquire()
        plain: list[float] = []
        waited: list[float] = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            assert lease.renew()
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            ours, confirmed = lease.renew_confirmed(1, 500)
            waited.append(time.perf_counter() - started)
            assert ours and confirmed >= 1
        a, b = statistics.median(plain) * 1e6, statistics.median(waited) * 1e6
        print(f"{args.rounds} rounds, {args.replicas} replica(s): renewal {a:.0f} us, "
              f"renewal + WAIT {b:.0f} us, WAIT costs {b - a:.0f} us per send (medians)")
    finally:
        group.stop()


if __name__ == "__main__":
    main()
