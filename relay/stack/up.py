"""Bringing a stack to its configuration: start it, or apply every change to the running
one (``pd-relay stack up`` with the shell's settings, ``reload`` with the recorded ones).
Everything is checked first (settings, keys file, removed keys that left events behind),
so a bad change stops before anything is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from relay.errors import ConfigError
from relay.keys import new_key
from relay.routes.channels import referenced
from relay.settings import Settings
from relay.stack.compose import ComposeStack, compose_env, docker_answers
from relay.stack.files import read_small, write_file
from relay.stack.history import local_postgres, migrate, running, start_local, wanted
from relay.stack.keycheck import check
from relay.stack.native import NativeStack
from relay.stack.options import (
    StackOptions,
    ignored_options,
    redis_memory,
    relay_env,
    with_settings,
)
from relay.stack.password import (
    postgres_password,
    previous_stack_urls,
    redis_password,
    stack_redis_url,
)
from relay.stack.processes import pd_relay
from relay.stack.record import Recorded
from relay.stack.report import announce, changed_settings, warn_plain_http
from relay.stack.tls import problems as tls_problems


def apply(options: StackOptions, environ: Mapping[str, str], previous: Recorded | None) -> int:
    """Bring the stack ``options`` describes to the ``RELAY_*`` settings in ``environ``."""
    for line in ignored_options(environ):
        print(f"pd-relay: WARNING: {line}", file=sys.stderr)
    mode = options.mode
    if mode == "auto":
        mode = "native" if options.roles else "docker" if docker_answers() else "native"
    if options.roles:
        _check_relay_role(options, environ, mode)
    if options.topology != "single" and mode != "docker":
        raise ConfigError([f"PD_RELAY_TOPOLOGY={options.topology} is docker compose's: natively, "
                           "give each host its roles (pd-relay stack up --role ...)"])
    keys, problems = check(options.keys_file)
    problems += tls_problems(options.tls_cert, options.tls_key)
    if problems:
        raise ConfigError(problems)
    warn_plain_http(options)
    env = relay_env(environ)
    env["RELAY_KEYS_FILE"] = str(options.keys_file)
    if options.demo:  # the demo's data lives apart from a real stack's in the same Redis
        env.setdefault("RELAY_PD_URL", f"http://127.0.0.1:{options.sim_port}")
        env.setdefault("RELAY_PREFIX", "pdr-demo")
        env.setdefault("RELAY_ALLOW_ANONYMOUS", "true")  # it listens on loopback only
        env.setdefault("RELAY_UI_OPEN_VIEW", "true")  # simulated pages: anyone here may look
    routes = options.home / "pd_routes.yml"
    if "RELAY_ROUTES_FILE" not in env and routes.exists():
        env["RELAY_ROUTES_FILE"] = str(routes)
    if "RELAY_ROUTES_FILE" in env:  # the channels' secrets, for every process that reads it
        env.update({name: environ[name] for name in referenced(Path(env["RELAY_ROUTES_FILE"]))
                    if name in environ})
    if mode == "native":  # the stack's own Redis, on its socket, with its password
        # a stack recorded by v0.2.0 or before named it by TCP (earlier, without password)
        url = env.get("RELAY_REDIS_URL")
        # (root reads nothing in a data directory the service user may already own)
        earlier = {options.secrets_dir} | ({options.data_dir} if not options.user
                                           or _roots(options.data_dir) else set())
        if url is None or url in {u for d in earlier
                                  for u in previous_stack_urls(d, options.redis_port)}:
            env["RELAY_REDIS_URL"] = stack_redis_url(options.secrets_dir, options.run_dir)
    own = mode == "native" and wanted(options, env)  # the stack's own PostgreSQL
    postgres = local_postgres(options)
    if own and postgres.password_file.exists():  # made by an earlier start: its DSN
        env["RELAY_HISTORY_DSN"] = postgres.dsn()
    # every bad setting or key, listed, before anything starts (a new cluster's DSN is
    # known once it is made: a stand-in meanwhile)
    settings = Settings.from_env(env if "RELAY_HISTORY_DSN" in env or not own else dict(
        env, RELAY_HISTORY_DSN=f"postgresql://127.0.0.1:{options.postgres_port}/pd_relay"))
    options = redis_memory(options, settings)
    if previous is not None:
        if previous.mode != mode and _running(previous):
            raise ConfigError([f"a {previous.mode} stack runs from {options.run_dir}: "
                               "stop it first (./start.sh stop)"])
        for line in changed_settings(previous.relay_env, env):
            print(f"pd-relay: {line}", file=sys.stderr)
    if mode == "docker":
        compose = ComposeStack(options)
        pg_password = postgres_password(options.secrets_dir) \
            if options.history == "postgres" else ""
        compose.write(compose_env(env, options.demo, redis_password(options.secrets_dir),
                                  options.topology, pg_password), keys)
        compose.up()
        Recorded("docker", options, env).save()
        announce(options, "./start.sh logs", settings.allow_anonymous)
        return 0
    started = own and not running(postgres)
    if started:
        env["RELAY_HISTORY_DSN"] = start_local(options)
    try:
        # its warnings (a Redis reached in the clear, say) where the operator reads, not
        # only in the nodes' logs; its INFO lines stay out
        checked = subprocess.run([*pd_relay(), "check"],
                                 env=dict(with_settings(env), RELAY_LOG_LEVEL="WARNING"),
                                 capture_output=True, text=True)
        print(checked.stderr, end="", file=sys.stderr)
        if checked.returncode != 0:
            raise _Failed(checked.returncode)
        migrate(env)  # the record's schema before any process writes or reads it
        try:
            native = NativeStack(options)
            if options.roles:  # this host's Redis and Sentinel: their passwords from environ
                native.up(env, keys, environ)
            else:
                native.up(env, keys)
        except AssertionError:  # not ready in time
            subprocess.run([*pd_relay(), "check", "--redis"], env=with_settings(env),
                           stdout=subprocess.DEVNULL)  # Redis runs now: say why, if it can
            raise
    except _Failed as failed:
        if started:  # nothing else runs: no PostgreSQL left behind
            postgres.stop()
        return failed.code
    except (ConfigError, subprocess.CalledProcessError):
        if started and not NativeStack(options).supervisor.running():
            postgres.stop()
        raise
    announce(options, f"{options.run_dir}/logs/", settings.allow_anonymous)
    return 0


class _Failed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _check_relay_role(options: StackOptions, environ: Mapping[str, str], mode: str) -> None:
    """The relay on one of several hosts: natively, against the Sentinels."""
    problems = []
    if mode != "native":
        problems.append("--role runs the native stack (PD_RELAY_MODE=native); under "
                        "docker compose use its sentinel profile (README)")
    if not environ.get("RELAY_REDIS_URL", "").startswith("redis+sentinel://"):
        problems.append("--role relay needs RELAY_REDIS_URL=redis+sentinel://[:PASSWORD@]"
                        "h1:26379,h2:26379,h3:26379/mymaster (the Sentinels, not one Redis)")
    if problems:
        raise ConfigError(problems)


def demo_keys(path: Path, earlier: Sequence[Path] = ()) -> None:
    """Three generated keys for the demo, kept across runs: an earlier layout's
    (``earlier``: the run directory's, where a release before kept them) are taken over,
    or the demo's open incidents would name keys it no longer has."""
    if path.exists() and path.stat().st_size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in earlier:
        found = read_small(old, 64 * 1024)  # the run directory may be another user's
        if found and found.strip():
            write_file(path, found)
            return
    keys = "\n".join(new_key() for _ in range(3))
    write_file(path, f"# demo keys for the PagerDuty simulator (./start.sh --demo)\n{keys}\n")


def _running(recorded: Recorded) -> bool:
    if recorded.mode == "docker":
        return True
    return NativeStack(recorded.options).supervisor.running()


def _roots(directory: Path) -> bool:
    """Whether ``directory`` is root's (so no other user put anything in it), or absent."""
    try:
        return os.lstat(directory).st_uid == 0
    except FileNotFoundError:
        return True
