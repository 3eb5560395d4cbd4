"""The processes of a host's Redis and Sentinel roles (``relay.stack.roles``) under the
native stack's supervisord: beside the relay's (``--role relay``), or alone on a host that
stores and watches but runs no relay."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from relay.stack import account, binaries, render
from relay.stack.account import ServiceUser
from relay.stack.datanode import START_FILE, start_for, write_start
from relay.stack.files import own_directory, write_file
from relay.stack.model import REDIS, SENTINEL, Program
from relay.stack.options import StackOptions
from relay.stack.processes import wait_until
from relay.stack.record import Recorded
from relay.stack.roles import (
    SENTINEL as SENTINEL_ROLE,
)
from relay.stack.roles import (
    min_replicas,
    passwords,
    redis_conf,
    sentinel_auth,
    sentinel_conf,
    write_sentinel_conf,
)
from relay.stack.supervisor import render as render_supervisor

NODE_CONF = "redis-node.conf"  # in the state directory: it holds the password


def sentinel_file(options: StackOptions) -> Path:
    return options.data_dir / "sentinel" / "sentinel.conf"


def role_programs(options: StackOptions, env: Mapping[str, str], binary: str | None = None,
                  user: ServiceUser | None = None) -> list[Program]:
    """The host's Redis data node and Sentinel, their files written (a Sentinel's only
    the first time: ``roles.write_sentinel_conf``). Started as root, they run as ``user``:
    the data node's file is root's, which its group may read; the Sentinel's, which it
    rewrites, is the user's, in the user's data directory."""
    roles = options.roles
    if not roles.data_node and SENTINEL_ROLE not in roles.roles:
        return []
    password, sentinel_password = passwords(roles, env)
    binary = binary or binaries.redis_server(install=True)
    programs = []
    group = user.gid if user else None
    if roles.data_node:
        _user_dir(options.data_dir / "redis", user)
        options.state_dir.mkdir(parents=True, exist_ok=True)
        text = redis_conf(roles, password, min_replicas(env), replicaof=False)
        conf = write_file(options.state_dir / NODE_CONF, text,
                          0o640 if group is not None else 0o600, group)
        start = options.state_dir / START_FILE  # whom it asks for the primary, at each start
        text += write_start(start, start_for(roles, env, sentinel_password), group)
        argv = render.redis_argv(binary, roles.redis_port, options.data_dir / "redis",
                                 host=roles.announce, maxmemory_mb=options.redis_maxmemory_mb,
                                 config=str(conf))
        argv = [sys.executable, "-m", "relay.stack.datanode", str(start), *argv]
        # the files' digest in its fingerprint: a new password or replica count restarts it
        programs.append(Program(REDIS, REDIS, tuple(argv), {"PD_RELAY_CONF_DIGEST": _digest(text)}))
    if SENTINEL_ROLE in roles.roles:
        path = sentinel_file(options)
        _user_dir(path.parent, user)
        text = sentinel_conf(roles, password, sentinel_password, path.parent)
        auth = sentinel_auth(roles, password, sentinel_password)
        existed = path.exists()
        if write_sentinel_conf(path, text, auth) and user:
            os.lchown(path, user.uid, user.gid)
        if existed:
            print(f"pd-relay: keeping {path} (the Sentinel's state: the current primary and "
                  "its peers; its passwords are the ones given now); remove it to start the "
                  "Sentinel afresh", file=sys.stderr)
        # the passwords' digest in its fingerprint: new ones restart it
        programs.append(Program(SENTINEL, SENTINEL, (binary, str(path), "--sentinel"),
                                {"PD_RELAY_CONF_DIGEST": _digest("\n".join(auth))}))
    return programs


def up_without_relay(options: StackOptions, env: Mapping[str, str]) -> Recorded:
    """A host with a Redis or Sentinel role and no relay: those processes alone (started
    as root: as the service user, like the whole stack)."""
    from relay.stack.native import NativeStack, _running_from  # it runs role_programs too

    native = NativeStack(options)
    native.refuse_unsafe()
    user = account.prepare(options, _running_from) if options.user else None
    if user:
        own_directory(options.state_dir, 0o750, user.gid)
    native.prepare()
    if user:  # supervisord switches to the user, who writes the logs
        os.lchown(options.run_dir / "logs", user.uid, user.gid)
    programs = role_programs(options, env, user=user)
    supervisor = native.supervisor
    conf = render_supervisor(programs, options.run_dir, options.home,
                             options.user if user else "", runtime=options.supervisor_dir)
    write_file(supervisor.conf, conf, 0o640 if user else 0o600, user.gid if user else None)
    if supervisor.running():  # restarts what changed (its section), adds, removes
        supervisor.ctl("update", check=True)
    else:
        supervisor.start()
    recorded = Recorded("native", options, {}, [], {p.name: p.fingerprint for p in programs})
    recorded.save()
    roles = options.roles
    ports = ([roles.redis_port] if roles.data_node else []) + \
        ([roles.sentinel_port] if SENTINEL_ROLE in roles.roles else [])
    for port in ports:
        wait_until(lambda p=port: _listening(roles.announce, p), 60,  # type: ignore[misc]
                   f"{roles.announce}:{port}", every=0.2)
    print(f"pd-relay: {', '.join(roles.roles)} running on {roles.announce}", file=sys.stderr)
    return recorded


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _user_dir(path: Path, user: ServiceUser | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user:  # in the user's data directory (lchown: a link there stays a link)
        os.lchown(path, user.uid, user.gid)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0
