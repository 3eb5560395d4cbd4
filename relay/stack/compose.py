"""The docker compose stack: docker-compose.yml holds Redis, the ingress service, nginx
and the simulator; ``override`` writes, from the same programs as native mode, a worker
service per key, every ``RELAY_*`` setting for the ingress and the workers, and Redis's
command line (``render.redis_argv``, as every stack runs it)."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from relay.keys import KeysFile
from relay.stack.compose_sentinel import sentinel_url
from relay.stack.compose_sentinel import services as sentinel_services
from relay.stack.files import own_directory, write_file
from relay.stack.model import CHANNELS, EXPORTER, INGRESS, WORKER, keys_digest, relay_programs
from relay.stack.options import StackOptions
from relay.stack.password import redis_password, redis_url
from relay.stack.render import redis_argv
from relay.stack.roles import Roles, min_replicas, passwords
from relay.stack.tls import directives

ROUTES_IN_CONTAINER = "/etc/pd-relay/pd_routes.yml"
KEYS_IN_CONTAINER = "/etc/pd-relay/pd_routing_keys.txt"
OVERRIDE = "docker-compose.override.yml"
IMAGE_UID = 10001  # the Dockerfile's `relay` user: the containers' own, never root
COPIES = "compose"  # in the run directory: the files the image's user reads (as root)
POSTGRES_HOST = "postgres"  # docker-compose.yml's service (profile postgres)


def compose_env(relay_env: dict[str, str], demo: bool, password: str,
                topology: str = "single", postgres_password: str = "") -> dict[str, str]:
    """The settings as the containers see them: their keys file, compose's Redis (with the
    stack's password; its Sentinels in the sentinel topology) unless another is named,
    the simulator service in the demo, and with ``postgres_password`` (RELAY_HISTORY=
    postgres) compose's PostgreSQL unless a DSN is given."""
    env = dict(relay_env, RELAY_KEYS_FILE=KEYS_IN_CONTAINER)
    if postgres_password:
        env.setdefault("RELAY_HISTORY_DSN", postgres_dsn(postgres_password))
    env.setdefault("RELAY_REDIS_URL", sentinel_url(password) if topology == "sentinel"
                   else redis_url("redis", 6379, password))
    if demo:
        env.setdefault("RELAY_PD_URL", "http://simulator:8090")
    return env


def postgres_dsn(password: str) -> str:
    """compose's own PostgreSQL (the ``postgres`` profile), as the containers reach it."""
    return f"postgresql://pd_relay:{password}@{POSTGRES_HOST}:5432/pd_relay"


def image_copies(options: StackOptions, env: dict[str, str],
                 chown: Callable[[Path, int, int], None] = os.chown) -> None:
    """As root: copies of the keys and routes files that only the image's user reads
    (the originals are private to root), mounted instead of them."""
    directory = own_directory(options.state_dir / COPIES, 0o755)  # root's: no link followed
    routes = env.get("RELAY_ROUTES_FILE")
    for source, name in ((options.keys_file, Path(KEYS_IN_CONTAINER).name),
                         *([(Path(routes), Path(ROUTES_IN_CONTAINER).name)] if routes else [])):
        copy = write_file(directory / name, source.read_bytes(), 0o400)
        chown(copy, IMAGE_UID, IMAGE_UID)


def override(options: StackOptions, env: dict[str, str], keys: KeysFile,
             caller: tuple[int, int] | None = None) -> dict[str, Any]:
    """The override for ``caller`` (uid, gid; default this process's): the containers run
    as the caller, who may read the keys file; as root they keep the image's unprivileged
    user, reading copies of the files (``image_copies``)."""
    uid, gid = caller or (os.getuid(), os.getgid())
    programs = relay_programs([], env, keys, options.keys_file, [8080], None, host="0.0.0.0",
                              workers=options.workers)
    routes = env.get("RELAY_ROUTES_FILE")
    keys_file, routes_file = options.keys_file, Path(routes).resolve() if routes else None
    if uid == 0:
        copies = options.state_dir / COPIES
        keys_file = copies / Path(KEYS_IN_CONTAINER).name
        routes_file = copies / Path(ROUTES_IN_CONTAINER).name if routes else None
    mount = [f"{keys_file}:{KEYS_IN_CONTAINER}:ro"]
    if routes_file:  # the routes file too, where the containers look for it
        mount.append(f"{routes_file}:{ROUTES_IN_CONTAINER}:ro")
    user = {} if uid == 0 else {"user": f"{uid}:{gid}"}
    # the image's redis-server, with the flags every stack runs it with and the password
    # on its standard input ($$: compose leaves the $ to the container's shell)
    argv = redis_argv("redis-server", 6379, Path("/data"), None, options.redis_maxmemory_mb,
                      config="-")
    script = f"exec {shlex.join(argv)} <<EOF\nrequirepass $$PD_RELAY_REDIS_PASSWORD\nEOF\n"
    password = redis_password(options.secrets_dir)
    services: dict[str, Any] = {
        "redis": {"command": ["sh", "-c", script],
                  "environment": {"PD_RELAY_REDIS_PASSWORD": password,
                                  "REDISCLI_AUTH": password}},  # its healthcheck's redis-cli
        "nginx": {"environment": options.limits.placeholders()},
    }
    if options.topology == "sentinel":  # a primary and a replica, three Sentinels
        passwords(Roles(), env)  # ConfigError: one their files could not hold
        services.update(sentinel_services(options.redis_maxmemory_mb, password,
                                          env.get("RELAY_SENTINEL_PASSWORD", ""),
                                          min_replicas(env)))
    if options.tls:  # HTTPS only, with the pair mounted read-only
        inside = (Path("/etc/nginx/tls/cert.pem"), Path("/etc/nginx/tls/key.pem"))
        services["nginx"]["environment"].update(
            PD_RELAY_LISTEN="8080 ssl", PD_RELAY_TLS=directives(*inside))
        services["nginx"]["volumes"] = [f"{outside}:{path}:ro"
                                        for outside, path in zip(options.tls, inside, strict=True)]
    for program in programs:
        environment = {k: v.replace("$", "$$") for k, v in program.env.items()}  # no ${...}
        if routes:
            environment["RELAY_ROUTES_FILE"] = ROUTES_IN_CONTAINER
        if program.role == INGRESS:
            services["ingress"] = {"environment": environment, "volumes": mount, **user}
        elif program.role in (WORKER, CHANNELS, EXPORTER):
            if program.role == WORKER:  # a container reads the keys file when it starts
                environment["PD_RELAY_KEYS_DIGEST"] = keys_digest(options.keys_file)
            services[program.name] = {
                "image": "pd-relay:latest",
                "command": list(program.argv),
                "environment": environment,
                "volumes": mount,
                **user,
                "depends_on": {"redis": {"condition": "service_healthy"}},
                "restart": "unless-stopped",
                "stop_grace_period": "20s",
            }
    if env.get("RELAY_HISTORY_DSN"):
        history_services(services, env, mount, user)
    return {"services": services}


def history_services(services: dict[str, Any], env: dict[str, str], mount: list[str],
                     user: dict[str, str]) -> None:
    """The record in PostgreSQL: its schema migrated by a one-shot service that the ingress
    and the exporter wait for; compose's own PostgreSQL given its password (in its
    environment) when the DSN names it."""
    ours = urlsplit(env["RELAY_HISTORY_DSN"]).hostname == POSTGRES_HOST
    exporter = services[EXPORTER]
    migrate: dict[str, Any] = {
        "image": "pd-relay:latest", "command": ["history", "migrate"],
        "environment": exporter["environment"], "volumes": mount, **user, "restart": "no",
        "depends_on": {"redis": {"condition": "service_healthy"}}}
    if ours:
        password = urlsplit(env["RELAY_HISTORY_DSN"]).password or ""
        services["postgres"] = {"environment": {"POSTGRES_PASSWORD": password.replace("$", "$$")}}
        migrate["depends_on"]["postgres"] = {"condition": "service_healthy"}
    services["history-migrate"] = migrate
    done = {"history-migrate": {"condition": "service_completed_successfully"}}
    services["ingress"]["depends_on"] = done
    exporter["depends_on"] = dict(exporter["depends_on"], **done)


class ComposeStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.override = options.state_dir / OVERRIDE  # root's, as root

    def command(self, *args: str) -> list[str]:
        return ["docker", "compose", "-p", "pd-relay", "-f",
                str(self.options.home / "docker-compose.yml"), "-f", str(self.override), *args]

    def write(self, env: dict[str, str], keys: KeysFile) -> None:
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            image_copies(self.options, env)
        text = "# generated by pd-relay stack: a worker per routing key, every setting\n"
        text += yaml.safe_dump(override(self.options, env, keys), sort_keys=False)
        write_file(self.override, text)

    def up(self) -> None:
        profile = ["--profile", "demo"] if self.options.demo else []
        if self.options.history == "postgres":
            profile += ["--profile", "postgres"]
        if self.options.topology == "sentinel":
            profile += ["--profile", "sentinel"]
        env = dict(os.environ, PD_RELAY_PORT=str(self.options.port),
                   PD_RELAY_BIND=self.options.bind)
        subprocess.run(self.command(*profile, "up", "-d", "--build", "--remove-orphans",
                                    "--scale", f"ingress={self.options.nodes}"),
                       env=env, check=True)

    def down(self) -> int:
        return subprocess.run(self.command("--profile", "demo", "--profile", "sentinel",
                                           "--profile", "postgres", "down")).returncode

    def status(self) -> bool:
        return subprocess.run(self.command("ps")).returncode == 0

    def exec_argv(self, args: list[str]) -> list[str]:
        return self.command("exec", "-T", "ingress", "pd-relay", *args)

    def logs_argv(self, name: str | None, lines: int, follow: bool) -> list[str]:
        return self.command("logs", "--tail", str(lines), *(["-f"] if follow else []),
                            *([name] if name else []))


def docker_answers() -> bool:
    def ok(*argv: str) -> bool:
        try:
            return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    return ok("docker", "compose", "version") and ok("docker", "info")

