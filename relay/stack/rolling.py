"""Applying a changed configuration to a running native stack, one program at a time.

Order: Redis (its clients wait it out: the ingress answers 503 with Retry-After), the
simulator, new ingress nodes (ready before nginx sends them anything), changed ingress
nodes one by one (nginx stops sending one new requests and finishes what it sent; the
node restarts, answers /readyz, goes back), nginx's final upstream list, removed nodes,
then the workers: removed, added, changed one by one. A program whose fingerprint did not
change keeps running; an ingress node among them gets SIGHUP, which makes it read the
routes file again, and so does a worker process, which reads the keys file again (each
serves every key: a key added or removed restarts none of them).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

import requests

from relay.stack.model import CHANNELS, EXPORTER, INGRESS, NGINX, WORKER, Program
from relay.stack.nginx import Nginx, reload, upstream
from relay.stack.processes import wait_until
from relay.stack.record import Recorded
from relay.stack.supervisor import Supervisor
from relay.stack.unixhttp import ready_at

log = logging.getLogger(__name__)
START_WAIT_S = 60.0


def ready(host: str, port: int, scheme: str = "http") -> bool:
    """nginx passes /healthz to a node, which answers 200 (over HTTPS, the certificate is
    not checked: nginx's name for itself need not be this address). Not /readyz: through
    nginx that wants an operator's token (the nodes' own /readyz is asked on their
    sockets, ``node_ready``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # urllib3's warning about the unchecked cert
            reply = requests.get(f"{scheme}://{host}:{port}/healthz", timeout=2, verify=False)
        return reply.status_code == 200
    except requests.RequestException:
        return False


def node_ready(supervisor: Supervisor, program: Program) -> bool:
    """An ingress node answers /readyz on its socket, from the process supervisord runs
    for it (another process there is not the node, whatever it answers)."""
    assert program.socket is not None
    return ready_at(program.socket, supervisor.states().get(program.name, ("", 0))[1])


class Rolling:
    def __init__(self, supervisor: Supervisor, nginx: Nginx, previous: Recorded,
                 programs: list[Program],
                 may_signal: Callable[[int], bool] = lambda pid: True) -> None:
        self.supervisor = supervisor
        # whether root may signal a pid supervisord names (it may run as the service user)
        self.may_signal = may_signal
        self.nginx = nginx
        self.previous = previous
        self.programs = programs
        self.nginx_restarts = False
        self.start_wait_s = START_WAIT_S

    def apply(self, conf: str) -> list[str]:
        """Write supervisord's new configuration and bring the programs to it; return the
        names of the programs started, restarted or stopped."""
        old = self.previous.programs
        changed = [p for p in self.programs if old.get(p.name) != p.fingerprint]
        names = {p.name for p in self.programs}
        removed = [name for name in old if name not in names]
        conf_path = self.supervisor.conf
        conf_path.write_text(conf)
        self.supervisor.ctl("reread", check=True)
        nginx_changed = self.nginx.write() != self.previous.nginx_digest
        by_role = {role: [p for p in changed if p.role == role] for role in
                   (INGRESS, NGINX, "worker", "redis", "simulator", CHANNELS, "sentinel",
                    EXPORTER)}
        # a new listening address restarts nginx at the end: no reload before (it would
        # fail to bind while the old socket holds the port)
        self.nginx_restarts = bool(by_role[NGINX])
        for program in by_role["redis"] + by_role["sentinel"] + by_role["simulator"]:
            if program.role == "redis":
                _say("Redis's command line changed: restarting it (ingest answers 503 and "
                     "delivery waits until it is back)")
            self._update(program)
        for name in removed:
            if name in ("redis", "sentinel", "simulator"):
                self.supervisor.ctl("update", name, check=True)
        nodes = [p for p in self.programs if p.role == INGRESS]
        for program in by_role[INGRESS]:
            if program.name not in old:
                self._update(program)
        restarted = [p for p in by_role[INGRESS] if p.name in old]
        for program in restarted:
            if len(nodes) > 1:
                self.nginx.write(down={upstream(program)})
                self._reload_nginx()
            else:
                _say("one ingress node: ingest pauses while it restarts "
                     "(PD_RELAY_INGRESS_NODES=2 or more avoids that)")
            self._update(program)
        gone = [name for name in removed if name.startswith("ingress-")]
        if restarted or gone or nginx_changed:
            self.nginx.write()
            self._reload_nginx()
        for name in gone + [name for name in removed
                            if name.startswith("worker-") or name in (CHANNELS, EXPORTER)]:
            self.supervisor.ctl("update", name, check=True)
        for program in by_role["worker"] + by_role[CHANNELS] + by_role[EXPORTER]:
            self._update(program)
        for program in by_role[NGINX]:
            self._update(program)
        for program in nodes:  # the routes file is read again on SIGHUP, no restart
            if program not in changed:
                self.supervisor.ctl("signal", "HUP", program.name)
        for program in self.programs:  # and the keys file by the worker processes
            if program.role == WORKER and program not in changed:
                self.supervisor.ctl("signal", "HUP", program.name)
        done = [p.name for p in changed] + removed
        _say("restarted, started or stopped: " + ", ".join(done) if done else "nothing changed")
        return done

    def _update(self, program: Program) -> None:
        """(Re)start ``program`` with its new configuration and wait until it runs (an
        ingress node: until it answers /readyz)."""
        self.supervisor.ctl("update", program.name, check=True)

        def running() -> bool:
            state = self.supervisor.states().get(program.name, ("", 0))[0]
            if state == "FATAL":
                raise RuntimeError(f"{program.name} does not start ({state}): see its log")
            return state == "RUNNING" and (not program.socket
                                           or node_ready(self.supervisor, program))

        wait_until(running, self.start_wait_s, f"{program.name} to run", every=0.2)

    def _reload_nginx(self) -> None:
        if self.nginx_restarts:
            return
        pid = self.supervisor.states().get(NGINX, ("", 0))[1]
        if pid and self.may_signal(pid):
            reload(pid)


def _say(text: str) -> None:
    print(f"pd-relay: {text}", file=sys.stderr)
