"""The native stack: Redis, the relay's processes and nginx under supervisord.

``up`` starts it, or applies every change to a running one: a program whose fingerprint
changed is restarted, one at a time, an ingress node only after nginx has stopped
sending it requests (``rolling``), so ingest never stops while there are two nodes.

Redis and the ingress nodes listen on Unix sockets in the run directory, which only this
user may enter (mode 700): no other local user can reach them, or take a port they left
while restarting; only nginx listens on TCP.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from relay.errors import ConfigError
from relay.keys import KeysFile, key_id
from relay.stack import account, binaries, render
from relay.stack.files import own_directory, read_pid, write_file
from relay.stack.history import stop_local
from relay.stack.hosts import role_programs
from relay.stack.model import EXPORTER, REDIS, Program, relay_programs
from relay.stack.nginx import Nginx, parents, upstream
from relay.stack.options import StackOptions
from relay.stack.password import config_file, redis_password, stack_redis_url
from relay.stack.private import private_dir_problems
from relay.stack.processes import alive, pd_relay, wait_until
from relay.stack.record import Recorded
from relay.stack.report import public_host
from relay.stack.rolling import Rolling, node_ready, ready
from relay.stack.supervisor import Supervisor
from relay.stack.supervisor import render as render_supervisor

HOST = "127.0.0.1"
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, the last one a NUL


class NativeStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.run_dir = options.run_dir
        self.supervisor = Supervisor(Path(sys.executable).parent,
                                     options.state_dir / "supervisord.conf",
                                     options.supervisor_dir / "supervisord.pid")

    def refuse_unsafe(self) -> None:
        """ConfigError when the run or data directory is, or may become, another user's
        (``relay.stack.private``)."""
        owners = {os.geteuid()}
        user = account.lookup(self.options.user) if self.options.user else None
        if user is not None:
            owners.add(user.uid)
        above = {os.geteuid()}  # never the service user's: it could swap what is below
        problems = private_dir_problems(self.run_dir, "PD_RELAY_RUN_DIR", owners,
                                        above=above) \
            + private_dir_problems(self.options.data_dir, "PD_RELAY_DATA_DIR", owners,
                                   above=above)
        if self.options.system_dir:  # root's, where root keeps what it reads back
            problems += private_dir_problems(self.options.state_dir, "PD_RELAY_SYSTEM_DIR",
                                             {0}, above={0})
        if problems:
            raise ConfigError(problems)

    def prepare(self) -> None:
        """The run directory, for this user only (700, whatever it was: the sockets are
        reached through it); refused when it is not safely the stack's, or when a
        socket's path would not fit in one."""
        self.refuse_unsafe()
        longest = max([self.options.redis_socket, *self.options.ingress_sockets()],
                      key=lambda path: len(os.fsencode(path)))
        if len(os.fsencode(longest)) > SOCKET_PATH_MAX:
            raise ConfigError([f"the run directory {self.run_dir} is too deep for the stack's "
                               f"Unix sockets ({longest} is over {SOCKET_PATH_MAX} bytes): "
                               "set PD_RELAY_RUN_DIR to a shorter path"])
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700, follow_symlinks=False)

    def up(self, relay_env: dict[str, str], keys: KeysFile,
           environ: Mapping[str, str] | None = None) -> Recorded:
        """Start the stack, or apply every change to the running one; with roles
        (``StackOptions.roles``), this host's Redis and Sentinel beside the relay, their
        passwords from ``environ`` (``relay.stack.hosts``)."""
        o = self.options
        previous = Recorded.load(o.state_dir)
        # v0.2.0 recorded a stack in its run directory, root's stack too
        earlier = previous if o.state_dir == self.run_dir else Recorded.load(self.run_dir)
        if earlier is not None and not earlier.sockets and _running_from(self.run_dir):
            raise ConfigError([
                "the stack running from this directory was started by pd-relay v0.2.0 or "
                "before (its ingress nodes and Redis listen on TCP ports; this release puts "
                "them on Unix sockets, which a rolling restart cannot switch to): stop it "
                "first (./start.sh stop), then start it again (./start.sh): Redis keeps its "
                "data (the same data directory); ingest pauses meanwhile"])
        self.refuse_unsafe()  # before anything is made or chowned there
        # started as root: everything runs as the service user, reading private copies
        user = account.prepare(o, _running_from) if o.user else None
        group = user.gid if user else None  # may read what root writes for it
        if user:
            own_directory(o.state_dir, 0o750, group)
            if o.privileged_port:  # supervisord's and nginx's master's, as root
                own_directory(o.state_dir / "logs")
        env, tls = account.private_files(o, relay_env, user) if user else (relay_env, o.tls)
        self.prepare()
        if user and not o.privileged_port:  # supervisord, as the user, writes its logs there
            os.lchown(self.run_dir / "logs", user.uid, user.gid)
        programs: list[Program] = role_programs(o, environ or {}, user=user)
        if relay_env["RELAY_REDIS_URL"] == stack_redis_url(o.secrets_dir, o.run_dir):
            (o.data_dir / "redis").mkdir(parents=True, exist_ok=True)
            if user:  # in the user's data directory (lchown: a link there stays a link)
                os.lchown(o.data_dir / "redis", user.uid, user.gid)
            config = config_file(o.state_dir, redis_password(o.secrets_dir), group)
            argv = render.redis_argv(binaries.redis_server(install=True), 0,
                                     o.data_dir / "redis", maxmemory_mb=o.redis_maxmemory_mb,
                                     config=str(config), unixsocket=o.redis_socket)
            programs.append(Program(REDIS, REDIS, tuple(argv)))
        programs += relay_programs(pd_relay(), env, keys, o.keys_file,
                                   o.ingress_sockets(), o.sim_port if o.demo else None,
                                   workers=o.workers)
        nginx = Nginx(binaries.nginx(install=True), self.run_dir, f"{o.bind}:{o.port}",
                      [upstream(p) for p in programs if p.socket], o.limits, tls,
                      user.nginx if user else "", o.privileged_port,
                      home=o.state_dir / "nginx",
                      runtime=(o.state_dir / "nginx" if o.privileged_port else self.run_dir)
                      if user else None, group=group,
                      test_as=(user.uid, user.gid) if user and not o.privileged_port else None)
        programs.append(nginx.program())
        conf = render_supervisor(programs, self.run_dir, o.home, o.user if user else "",
                                 o.privileged_port, o.supervisor_dir)
        recorded = Recorded("native", o, relay_env, [key_id(k) for k in keys.keys],
                            {p.name: p.fingerprint for p in programs})
        if self.supervisor.running() and previous is not None:
            switched = account.switch_problems(previous.options, o)
            if switched:
                raise ConfigError(switched)
            print("pd-relay: already running: applying the changes", file=sys.stderr)
            Rolling(self.supervisor, nginx, previous, programs, self._ours).apply(conf)
            recorded.nginx_digest = nginx.write()
        else:
            self._check_ports(programs)
            recorded.nginx_digest = nginx.write()
            self._write(conf, group)
            print(f"pd-relay: starting {o.nodes} ingress node(s), {o.workers} worker "
                  f"process(es) serving {len(keys.keys)} key(s), "
                  + "a channel worker, "
                  + ("the history's exporter, " if any(p.role == EXPORTER for p in programs)
                     else "")
                  + "nginx" + (" and Redis" if programs[0].role == REDIS else "")
                  + " (native mode, supervisord)", file=sys.stderr)
            self.supervisor.start()
        recorded.save()
        if earlier is not None and earlier is not previous:  # v0.2.0's, now in state_dir
            (self.run_dir / "stack.json").unlink(missing_ok=True)
        self.wait_ready(programs)
        self._record_pids()
        return recorded

    def _write(self, conf: str, group: int | None = None) -> None:
        write_file(self.supervisor.conf, conf, 0o640 if group is not None else 0o600, group)

    def _check_ports(self, programs: list[Program]) -> None:
        o = self.options
        wanted = [(o.bind, o.port)]
        if o.demo:
            wanted.append((HOST, o.sim_port))
        taken = [f"{host}:{port}" for host, port in wanted if not _free(host, port)]
        if taken:
            raise ConfigError([f"port {t} is taken: set PD_RELAY_*PORT to free ones "
                               "(./start.sh --help)" for t in taken])

    def wait_ready(self, programs: list[Program], timeout: float = 90) -> None:
        """Every ingress node answers /readyz (it reaches Redis), then nginx does; the nodes
        are asked first so that nginx never sees them down and benches them."""
        o = self.options
        public = public_host(o)
        for program in programs:
            if program.socket:
                wait_until(lambda p=program: node_ready(self.supervisor, p), timeout,  # type: ignore[misc]
                           f"{program.name} to answer on {program.socket}", every=0.2)
        wait_until(lambda: ready(public, o.port, o.scheme), timeout, f"nginx on port {o.port}")

    def _record_pids(self) -> None:
        pids = {pid for _, pid in self.supervisor.states().values() if pid}
        supervisord = read_pid(self.supervisor.pidfile)
        if supervisord is not None:
            pids.add(supervisord)
        write_file(self.options.state_dir / "pids", "".join(f"{pid}\n" for pid in sorted(pids)))

    def down(self) -> int:
        """Stop everything ``up`` started, by supervisord and then by the recorded pids."""
        pidfile = self.options.state_dir / "pids"
        if not self.supervisor.running() and not pidfile.exists():
            stop_local(self.options)
            print("pd-relay: nothing to stop")
            return 0
        if self.supervisor.running():
            self._record_pids()
            self.supervisor.ctl("shutdown")
        listed = [int(pid) for pid in pidfile.read_text().split()]
        pids = [pid for pid in listed if self._ours(pid)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        for pid in filter(self._ours, pids):  # asked again: a pid may have been reused
            print(f"pd-relay: process {pid} did not stop: killing it", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
        pidfile.unlink()
        print(f"pd-relay: stopped {len(listed)} process(es)")
        stop_local(self.options)  # after the processes that write to it
        return 0

    def _ours(self, pid: int) -> bool:
        """Whether root may signal ``pid``: started as root, the pids come from a
        supervisord that may run as the service user (and say anything), so only its
        processes, supervisord's own (root's pid file) and nginx's master under it."""
        if not alive(pid):
            return False  # nothing to signal (and a pid free now may be anyone's later)
        if not self.options.user:
            return True
        user = account.lookup(self.options.user)
        if user is not None and uid_of(pid) == user.uid:
            return True
        trusted = self.supervisor.pidfile if self.options.privileged_port else None
        supervisord = read_pid(trusted) if trusted is not None else None
        if supervisord is not None:
            return pid == supervisord or parents().get(pid) == supervisord
        print(f"pd-relay: process {pid} is not the stack's: not stopping it", file=sys.stderr)
        return False

    def status(self) -> bool:
        if not self.supervisor.running():
            print("pd-relay: not running")
            return False
        print(self.supervisor.ctl("status"))
        return True

    def log_files(self, name: str | None) -> list[Path]:
        logs = self.options.supervisor_dir / "logs"
        every = sorted(p for p in logs.glob("*.log") if p.stem != "pip")
        if name:
            return [p for p in every if p.stem == name or p.stem.startswith(name + "-")]
        return every


def _running_from(run_dir: Path) -> bool:
    """Whether a native stack's supervisord runs from ``run_dir``."""
    return Supervisor(Path(sys.executable).parent, run_dir / "supervisord.conf").running()


def uid_of(pid: int) -> int | None:
    """The real uid of process ``pid`` (None: gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
