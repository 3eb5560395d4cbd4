"""``pd-relay ingress``: serve the HTTP ingress (Flask under waitress). SIGHUP reloads the
routes file; maintenance windows added at run time are followed; the heartbeat checks are
read and the ingress's liveness mark set every few seconds (``relay.pingchecks``);
SIGTERM stops it after the requests under way."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from relay.names import Names
from relay.settings import Settings
from relay.startup import (
    exit_on_sigterm,
    redis_memory_problems,
    removed_keys_left_something,
    warn_of_redis_link,
)
from relay.store import connect

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    ingress = sub.add_parser("ingress", help="serve the HTTP ingress (Flask under waitress)")
    ingress.add_argument("--host", default="127.0.0.1")
    ingress.add_argument("--port", type=int, default=8080)
    ingress.add_argument("--unix-socket", metavar="PATH",
                         help="listen on this Unix socket (mode 600) instead of --host/--port: "
                         "keep it in a directory only this user may enter")


def server_options(settings: Settings) -> dict[str, Any]:
    """waitress's options, but where it listens."""
    return {
        "threads": settings.threads,
        "ident": "pd-relay",
        # Flask answers bodies over the limit with a JSON 413; waitress only stops absurd ones.
        "max_request_body_size": settings.max_body_bytes * 4,
        # waitress drops X-Forwarded-* from peers it does not trust (all, without
        # trusted_proxy): the app decides whom to believe (relay.http.from_proxy); without
        # them every request through nginx looked like the stack's own check
        "clear_untrusted_proxy_headers": False,
    }


def command(settings: Settings, args: argparse.Namespace) -> int:
    import waitress

    from relay.app import create_app
    from relay.routes.windows import Windows, follow

    if removed_keys_left_something(settings):
        return 2
    redis_memory_problems(settings, logging.ERROR)
    warn_of_redis_link(settings.redis_url)
    app = create_app(settings)
    policy = app.extensions["pd_relay_policy"]
    signal.signal(signal.SIGHUP, lambda signum, frame: policy.reload())
    tally = app.extensions["pd_relay_tally"]
    tally.start()
    stopping = threading.Event()
    follow(Windows(connect(settings), Names(settings.prefix).maintenance), policy.set_windows,
           stopping)
    app.extensions["pd_relay_checks"].follow(stopping)
    where = {"unix_socket": args.unix_socket, "unix_socket_perms": "600"} \
        if args.unix_socket else {"host": args.host, "port": args.port}
    log.info(
        "ingress on %s for %d routing key(s), Redis %s",
        f"unix:{args.unix_socket}" if args.unix_socket else f"http://{args.host}:{args.port}",
        len(settings.routing_keys), settings.redis_shown,
    )
    exit_on_sigterm()
    waitress.serve(app, **where, **server_options(settings))
    stopping.set()
    tally.stop()
    tally.flush()
    log.info("ingress stopped")
    return 0
