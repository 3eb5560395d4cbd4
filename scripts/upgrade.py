"""The upgrade drill (issue 24), for ``scripts/drill --only upgrade``: the previous release
(the last tag, ``PREVIOUS``) runs under load with a backlog in storm mode's lanes; its
processes are replaced one at a time by this release's (each key's workers standby
first, then the ingress nodes behind nginx), and then back again, as a rollback
(README, "Upgrading": ``pd-relay format --rollback-to 2`` first); the count is the other
drills': lost, order violations, misrouted.

The previous release runs from its source, taken out of git into the drill's directory,
in this venv (its dependencies are this release's, fewer: pyproject.toml), its tree first
on PYTHONPATH; a probe checks that its code is what runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay import formats
from relay.keys import key_id
from relay.names import Names
from relay.stack.loopback import LoopbackStack as Stack
from relay.stack.processes import Process, wait_until

PREVIOUS = ("v0.2.0", "5a09afa33130")  # the last release's tag, or its commit
PREVIOUS_FORMAT = 2  # the stored formats' version it writes (the rollback's mark)
REPO = Path(__file__).resolve().parent.parent
ACTIONS = ("trigger", "acknowledge", "resolve")  # the drill's load, per incident
STEP_S = 1.0  # under load between two replacements
# Imports relay as the release in a tree runs it; the incidents' index (Names.where)
# came after v0.2.0
PROBE = ("import relay, relay.names; print(relay.__file__); "
         "print(hasattr(relay.names.Names, 'where'))")


def previous_release(into: Path) -> tuple[str, Path]:
    """The previous release's source, taken out of this clone's git into ``into``: its
    tag, else its commit; neither there is an error (a shallow clone: fetch them)."""
    for ref in PREVIOUS:
        found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                                f"{ref}^{{commit}}"], capture_output=True, text=True)
        if found.returncode == 0:
            into.mkdir(parents=True)
            archive = subprocess.run(["git", "-C", str(REPO), "archive", ref],
                                     capture_output=True, check=True, timeout=60).stdout
            subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True,
                           timeout=60)
            return ref, into
    raise RuntimeError(f"neither {' nor '.join(PREVIOUS)} is in the clone at {REPO}: "
                       "the upgrade drill needs the previous release (git fetch --tags)")


def probe(stack: Stack, tree: Path | None) -> tuple[str, bool]:
    """Where ``relay`` comes from, and whether it names the incidents' index, as a process
    of the release in ``tree`` (None: this one) imports it."""
    _, env = stack.release(tree)
    answer = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                            text=True, timeout=30, cwd=stack.workdir)
    if answer.returncode != 0:
        raise RuntimeError(f"the probe of {tree or 'this release'} failed: {answer.stderr}")
    where, newer = answer.stdout.split()
    return where, newer == "True"


def laned(stack: Stack) -> int:
    """Events waiting in storm mode's lanes, every key."""
    client, names = stack.redis.client(), Names()
    return sum(int(client.llen(lane)) for key in stack.keys
               for lane in names.lanes(key_id(key)))


class Rolling:
    """Replaces a stack's workers and ingress nodes, one at a time, by a release's."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.nodes: list[int] = []  # the ingress nodes' ports, behind nginx
        self.workers: dict[int, list[Process]] = {index: [] for index in range(len(stack.keys))}
        self.laned: list[int] = []  # events in the lanes at each replacement

    def start(self, tree: Path | None) -> str:
        """Two ingress nodes and two workers per key of ``tree``'s release; nginx's URL."""
        self.nodes = [int(url.rsplit(":", 1)[1]) for url in
                      (self.stack.start_ingress(tree=tree) for _ in range(2))]
        for index in self.workers:
            for _ in range(2):
                self.workers[index].append(self.stack.start_worker(index, tree=tree))
        return self.stack.start_nginx([f"127.0.0.1:{port}" for port in self.nodes])

    def replace(self, tree: Path | None) -> None:
        """Each key's workers (a standby of ``tree``'s release first, then one of the old
        stopped, twice), then each ingress node (stopped, started again on its port)."""
        for index, running in self.workers.items():
            for _ in range(2):
                self.laned.append(laned(self.stack))
                running.append(self.stack.start_worker(index, tree=tree))
                self.pause()
                running.pop(0).terminate()
                self.pause()
        for port in self.nodes:
            self.laned.append(laned(self.stack))
            node = next(p for p in self.stack.processes
                        if p.name == f"ingress-{port}" and p.alive())
            node.terminate()
            self.stack.start_ingress(port, tree=tree)
            self.pause()

    def pause(self) -> None:
        """STEP_S under load, then every process started must still run (a release that
        refuses what is stored exits at once)."""
        time.sleep(STEP_S)
        dead = [p for p in self.stack.processes
                if p.name.startswith(("ingress-", "worker-")) and p.popen.returncode
                not in (None, 0, -15)]
        if dead:
            tail = dead[0].log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{dead[0].name} exited ({dead[0].popen.returncode}): {tail}")


def run(workdir: Path, seconds: float, rate: float, load_of: Callable[[str], Any],
        verdict: Callable[[Stack, Any], dict[str, int]]) -> dict[str, Any]:
    """The drill; ``load_of(url)`` makes the drill's steady load (started here),
    ``verdict`` counts what arrived."""
    ref, tree = previous_release(workdir / "previous")
    stack = Stack(workdir / "stack", keys=3, RELAY_RATE_PER_MIN=100_000,
                  RELAY_LOG_LEVEL="WARNING", RELAY_LEASE_TTL_S=3,
                  RELAY_CONNECT_TIMEOUT_S=0.5, RELAY_READ_TIMEOUT_S=1.5,
                  RELAY_STORM_MODE="always")  # every event through the lanes
    try:
        old, new = probe(stack, tree), probe(stack, None)
        if not old[0].startswith(str(tree)) or old[1] or new[0].startswith(str(tree)) \
                or not new[1]:
            raise RuntimeError(f"the releases do not run apart: {ref} {old}, this {new}")
        stack.start_simulator()
        stack.sim_config(fail_rate=1.0, fail_status=503)  # a backlog from the start
        rolling = Rolling(stack)
        load = load_of(rolling.start(tree) + "/v2/enqueue")
        load.start()
        time.sleep(seconds / 5)
        stack.sim_config(fail_rate=0.7, fail_status=503)  # slower than the load: it grows
        wait_until(lambda: laned(stack) > 0, 30, "events in the lanes", every=0.2)
        rolling.replace(None)  # upgrade
        upgraded = stack.redis.client().get(Names().format)
        if str(upgraded) != str(formats.FORMAT):
            raise RuntimeError(f"the store's format version is {upgraded!r} after the upgrade")
        time.sleep(seconds / 5)
        marked = stack.cli("format", "--rollback-to", str(PREVIOUS_FORMAT),  # README's
                           "--yes")  # rollback
        if marked.returncode != 0:
            raise RuntimeError(f"pd-relay format --rollback-to {PREVIOUS_FORMAT}: "
                               f"{marked.stderr}")
        rolling.replace(tree)  # and back
        if str(stack.redis.client().get(Names().format)) != str(PREVIOUS_FORMAT):
            raise RuntimeError(f"the store's format version is not {PREVIOUS_FORMAT} after "
                               "the rollback")
        stack.sim_config(fail_rate=0.0)
        time.sleep(seconds / 5)
        load.stopped.set()
        load.join(30)
        load_stopped = time.monotonic()

        def drained() -> bool:
            seqs = {f"{e['dedup_key']}/{ACTIONS.index(e['event_action'])}"
                    for e in stack.delivered()}
            return set(load.accepted) <= seqs

        try:
            wait_until(drained, 120, "the backlog to drain", every=0.5)
            drain = f"{time.monotonic() - load_stopped:.0f}"
        except AssertionError:
            drain = "> 120"  # what is still missing is reported as lost
        row: dict[str, Any] = {"drill": f"upgrade ({ref} -> this -> {ref})",
                               **verdict(stack, load), "drained after load (s)": drain}
        counts = stack.sim_get("stats")["counts"]
        row["PagerDuty errors"] = sum(int(v) for k, v in counts.items()
                                      if k.isdigit() and k != "202")
        row["laned at each swap (min-max)"] = f"{min(rolling.laned)}-{max(rolling.laned)}"
        if min(rolling.laned) == 0:
            raise RuntimeError("a replacement found the lanes empty: the drill proved less "
                               f"than it says ({rolling.laned})")
        return row
    finally:
        stack.close()
