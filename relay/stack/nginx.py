"""nginx in front of a native stack's ingress nodes: its configuration, and reloads that
let no request fail (``drain``: a node leaves the upstream, nginx's old workers finish
what they sent it, then the node may stop)."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from relay.errors import ConfigError
from relay.stack import render
from relay.stack.files import own_directory
from relay.stack.model import NGINX, Program

log = logging.getLogger(__name__)
OLD_WORKERS_WAIT_S = 30.0


class Nginx:
    def __init__(self, binary: str, run_dir: Path, listen: str, upstreams: list[str],
                 limits: render.Limits, tls: tuple[Path, Path] | None = None,
                 user: str = "", master_root: bool = False, home: Path | None = None,
                 runtime: Path | None = None, group: int | None = None,
                 test_as: tuple[int, int] | None = None) -> None:
        self.binary = binary
        # started as root: the service user ("NAME GROUP") its workers run as, and whether
        # its master keeps root (a port below 1024) or runs as that user too
        self.user = user
        self.master_root = master_root
        self.limits = limits
        self.tls = tls
        # its configuration (``home``: root's state directory when root writes it, which
        # ``group`` may read) and where its master writes (``runtime``); ``test_as``: the
        # uid and gid `nginx -t` runs as when the master will not be root (root's test
        # would make nginx's temporary directories, and follow links, in the user's)
        self.home = home or run_dir / "nginx"
        self.runtime = runtime
        self.group = group
        self.test_as = test_as
        self.listen = listen
        self.upstreams = upstreams

    def write(self, down: Collection[str] = ()) -> str:
        """Write the configuration (nodes in ``down`` get no new requests); check it with
        ``nginx -t``; return its digest (of the certificate and key too)."""
        directive = (self.user if self.master_root else "") if self.user else None
        if self.group is None:
            self.home.mkdir(parents=True, exist_ok=True)
        else:  # root's, which the user it runs as may read
            own_directory(self.home, 0o750, self.group)
        main = render.nginx(self.home, self.listen, self.upstreams, down=down,
                            limits=self.limits, tls=self.tls, user=directive,
                            runtime=self.runtime, group=self.group)
        who = {"user": self.test_as[0], "group": self.test_as[1], "extra_groups": []} \
            if self.test_as else {}
        # its access log is /dev/stdout, which it opens by name: as the user, a pipe of
        # root's would refuse it; /dev/null does not (its errors go to the pipe, fd 2)
        tested = subprocess.run([*render.nginx_argv(self.binary, main)[:-2], "-t", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, **who)  # type: ignore[call-overload]
        if tested.returncode != 0:
            raise ConfigError([f"nginx refuses its configuration: {tested.stderr.strip()}"])
        site = (self.home / "pd-relay.conf").read_bytes()
        pair = b"".join(path.read_bytes() for path in self.tls or ())  # a renewed certificate
        return hashlib.sha256(main.read_bytes() + site + pair).hexdigest()[:16]

    def program(self) -> Program:
        """nginx under supervisord. Its address is in its environment too: a reload cannot
        move a listening socket (the old one holds the port), so a new address restarts it."""
        main = self.home / "nginx.conf"
        return Program(NGINX, NGINX, tuple(render.nginx_argv(self.binary, main)),
                       {"PD_RELAY_LISTEN": self.listen})


def upstream(program: Program) -> str:
    """nginx's name for an ingress node on its Unix socket."""
    return f"unix:{program.socket}"


def reload(master: int, wait_s: float = OLD_WORKERS_WAIT_S) -> bool:
    """Make nginx's master ``master`` read its configuration again, and wait until the
    workers that ran the old one have finished their requests and exited."""
    old = children(master)
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not old & children(master):
            return True
        time.sleep(0.05)
    log.warning("nginx's old workers still run %.0fs after a reload", wait_s)
    return False


def children(pid: int) -> set[int]:
    return {child for child, parent in parents().items() if parent == pid}


def parents() -> dict[int, int]:
    """Every process's parent, from /proc: pid to ppid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found
