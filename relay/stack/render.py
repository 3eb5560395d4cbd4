"""The nginx configuration and the redis-server command line, written in one place.

``pd-relay stack`` (start.sh), the end-to-end tests, the benchmarks and the drills all
render them here, so no nginx or Redis flag is written twice.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay.stack.files import write_file
from relay.stack.tls import directives

TEMPLATE = Path(__file__).resolve().parents[2] / "nginx" / "pd-relay.conf.template"


def template() -> Path:
    """nginx's site template: the project's, beside this package; installed, not editable
    (a stack started as root runs from a system venv), in the project's directory
    (``PD_RELAY_HOME``, as start.sh sets it, else the current one)."""
    if TEMPLATE.exists():
        return TEMPLATE
    return Path(os.environ.get("PD_RELAY_HOME") or os.getcwd()) / TEMPLATE.relative_to(
        TEMPLATE.parents[1])


def redis_argv(binary: str, port: int, directory: Path,
               host: str | None = "127.0.0.1", maxmemory_mb: int = 0,
               config: str | None = None, unixsocket: Path | None = None) -> list[str]:
    """redis-server on ``host`` (None: its default, as in a container), or with
    ``unixsocket`` on that socket only (no TCP port; mode 700: its user only), with its
    append-only file (fsync every second), at most ``maxmemory_mb`` of memory (0: no limit)
    and nothing evicted when it is full (the ingress answers 503 instead), no RDB
    snapshots, a subscriber that reads nothing cut off past 1 MB; reading ``config``
    first (a file, or ``-``: standard input), where the password is."""
    if unixsocket is not None:
        listen = ["--port", "0", "--unixsocket", str(unixsocket), "--unixsocketperm", "700"]
    else:
        listen = [*(["--bind", host] if host else []), "--port", str(port)]
    return [
        binary, *([config] if config else []), *listen, "--dir", str(directory),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        *(["--maxmemory", f"{maxmemory_mb}mb"] if maxmemory_mb else []),
        "--maxmemory-policy", "noeviction",
        # a subscriber to the wake channel that reads nothing (a worker process frozen)
        # is cut off past 1 MB, not 32: it subscribes again once it runs (worker.wake)
        "--client-output-buffer-limit", "pubsub", "1mb", "256kb", "30",
    ]


# nginx's connection slots per worker, sized for the per-client limits: CLIENTS addresses
# each holding its PD_RELAY_CLIENT_CONNECTIONS at once, each of those connections with one
# to an ingress node beside it (nginx counts both), and room for the idle upstream ones
# it keeps and its listening sockets. The defaults (50): 10,064. Between a floor (idle and
# header-trickling connections are not counted per client) and a cap (the slots are
# allocated at start, about 0.5 KB each).
CLIENTS = 100
SPARE_CONNECTIONS = 64
MIN_WORKER_CONNECTIONS = 4096
MAX_WORKER_CONNECTIONS = 16384
SPARE_FILES = 512  # beyond one descriptor per connection: logs, listeners, the master's


@dataclass(frozen=True)
class Limits:
    """Per-client limits at nginx, and who may read /metrics and /readyz through it."""

    rate: int = 20  # requests per second per client address
    burst: int = 200  # taken at once beyond the rate
    connections: int = 50  # open at once per client address
    admin_allow: tuple[str, ...] = ("127.0.0.1", "::1")

    def worker_connections(self) -> int:
        wanted = 2 * self.connections * CLIENTS + SPARE_CONNECTIONS
        return max(MIN_WORKER_CONNECTIONS, min(MAX_WORKER_CONNECTIONS, wanted))

    def placeholders(self) -> dict[str, str]:
        return {
            "PD_RELAY_CLIENT_RATE": str(self.rate), "PD_RELAY_CLIENT_BURST": str(self.burst),
            "PD_RELAY_CLIENT_CONNECTIONS": str(self.connections),
            "PD_RELAY_ADMIN_ALLOW": "".join(f"        allow {a};\n" for a in self.admin_allow),
        }


UNLIMITED = Limits(rate=1_000_000, burst=1_000_000, connections=65_000)  # loopback stacks


def nginx(home: Path, listen: str, upstreams: Sequence[str],
          workers: str = "auto", down: Collection[str] = (),
          limits: Limits | None = None, tls: tuple[Path, Path] | None = None,
          user: str | None = None, runtime: Path | None = None,
          group: int | None = None) -> Path:
    """Write ``home``/nginx.conf (and the site from the project's template, which the
    nginx image's envsubst also reads under compose); return the main file's path.
    ``upstreams`` are the ingress nodes' host:port or ``unix:PATH``; those in ``down``
    get no new requests (a node being restarted: nginx finishes what it sent there, then
    stops using it).
    With ``tls`` (certificate, key) it serves HTTPS only. ``user``: the ``user`` directive's
    "USER GROUP" (a stack started as root: its service user), "" for none, None to choose
    as ``_worker_user`` does. nginx's pid and temporary directories go in ``runtime``
    (default ``home``), where whoever runs its master may write; ``group`` may read the
    configuration (the service user's, when root writes it)."""
    runtime = runtime or home
    home.mkdir(parents=True, exist_ok=True)
    limits = limits or Limits()
    health = {up: "down" if up in down else "max_fails=2 fail_timeout=3s" for up in upstreams}
    servers = "".join(f"    server {up} {health[up]};\n" for up in upstreams)
    site = string.Template(template().read_text()).safe_substitute(
        PD_RELAY_UPSTREAM=servers, PD_RELAY_LISTEN=f"{listen} ssl" if tls else listen,
        PD_RELAY_TLS=directives(*tls) if tls else "",
        PD_RELAY_ACCESS_LOG="/dev/stdout",  # the process's log: rotated by supervisord
        **limits.placeholders(),
    )
    mode = 0o640 if group is not None else 0o600
    write_file(home / "pd-relay.conf", site, mode, group)
    user = _worker_user() if user is None else f"user {user};" if user else ""
    connections = limits.worker_connections()
    temp = "\n".join(f"    {kind}_temp_path {runtime}/nginx-{kind};"  # nginx makes them
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = home / "nginx.conf"
    write_file(main, f"""# generated by pd-relay: do not edit (edit nginx/pd-relay.conf.template)
{user}
worker_processes {workers};
pid {runtime}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile {_files(connections)};
events {{ worker_connections {connections}; }}
http {{
{temp}
    server_tokens off;
    include {home}/pd-relay.conf;
}}
""", mode, group)
    return main


def _files(connections: int) -> int:
    """Open files for a worker: one per connection and some spare; started as another
    user than root, no more than its hard limit (nginx could not raise it further)."""
    wanted = connections + SPARE_FILES
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if os.geteuid() == 0 or hard == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, hard)


def _worker_user() -> str:
    """A loopback stack (tests, benchmarks, drills; ``pd-relay stack`` names its service
    user instead) started as root runs nginx's workers as ``nobody`` (they touch no file:
    bodies and replies stay in memory, the logs are the master's stdout and stderr); else
    they run as whoever started it."""
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwnam("nobody")
    return f"user {user.pw_name} {grp.getgrgid(user.pw_gid).gr_name};"


def nginx_argv(binary: str, main: Path) -> list[str]:
    return [binary, "-p", str(main.parent), "-e", "stderr", "-c", str(main),
            "-g", "daemon off;"]
