"""What ``pd-relay stack`` tells the operator: where to send, and what changed."""

from __future__ import annotations

import json
import socket
import sys

from relay.http import loopback_host
from relay.settings import masked_url
from relay.stack.options import StackOptions


def public_host(options: StackOptions) -> str:
    """Where this machine reaches nginx."""
    return "127.0.0.1" if options.bind in ("0.0.0.0", "::", "") else options.bind


def public_url(options: StackOptions) -> str:
    """Where this machine sends to the stack."""
    return f"{options.scheme}://{public_host(options)}:{options.port}"


def loopback_only(bind: str) -> bool:
    """Whether nginx's address ``bind`` is reachable from this machine only."""
    return loopback_host(bind)  # a host name, or "" (every address): no


def plain_http_warning(options: StackOptions) -> str | None:
    """A warning when the stack takes plain HTTP from beyond this machine, else None."""
    if options.tls or loopback_only(options.bind):
        return None
    return (f"pd-relay: WARNING: listening on {options.bind or '*'}:{options.port} over "
            "plain HTTP: senders' API keys and routing keys, and operators' tokens and "
            "session cookies, cross the network in the clear. Serve HTTPS: set "
            "PD_RELAY_TLS_CERT and PD_RELAY_TLS_KEY (certificate with its chain, and its "
            "private key, PEM, mode 600), or PD_RELAY_BIND=127.0.0.1 to listen on this "
            "machine only (README, Security: TLS).")


def warn_plain_http(options: StackOptions) -> None:
    """Say it on standard error, at start-up."""
    warning = plain_http_warning(options)
    if warning:
        print(warning, file=sys.stderr)
        sys.stderr.flush()


def announce(options: StackOptions, logs: str, anonymous: bool) -> None:
    """Where to send, and a curl to try (naming a routing key where one is required);
    the plain-HTTP warning last, where the operator reads."""
    url = public_url(options)
    ca = f"--cacert {options.tls_cert} " if options.demo_tls else ""
    print(f"pd-relay: up: send events to {url}/v2/enqueue (PagerDuty Events API v2 format)")
    payload = {"summary": "pd-relay test", "source": socket.gethostname(), "severity": "info"}
    event: dict[str, object] = {"event_action": "trigger", "payload": payload}
    if not anonymous:  # events need a routing key (or the request an API key)
        event = {"routing_key": "<a key from your keys file>", **event}
    body = json.dumps(event, separators=(",", ":"))
    look = ("the demo's: anyone on this machine may look; changes want an admin's token"
            if options.demo else "sign in with an operator's token: README, Dashboard")
    print(f"""try it:
  curl -s {ca}-X POST {url}/v2/enqueue -H 'Content-Type: application/json' \\
    -d '{body}'
then:   ./start.sh status      logs: {logs}      stop: ./start.sh stop
        ./start.sh relay send-test      ./start.sh relay trace DEDUP_KEY
dashboard: {url}/ui/ ({look})""")
    warning = plain_http_warning(options)
    if warning:
        print(warning)
    sys.stdout.flush()


def changed_settings(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """A line per setting whose value changes, a Redis URL's password masked, a password
    setting's value never shown."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new and name in SECRET_SETTINGS:  # said to be set, never shown
            lines.append(f"{name}: {'(default)' if old is None else '(set)'} -> "
                         f"{'(default)' if new is None else '(set, changed)' if old else '(set)'}")
        elif old != new:
            lines.append(f"{name}: {_shown(name, old)} -> {_shown(name, new)}")
    return lines


# settings that are secrets whole (promise 6); a Redis URL's password is masked in place
SECRET_SETTINGS = frozenset({"RELAY_SENTINEL_PASSWORD"})


def _shown(name: str, value: str | None) -> str:
    if value is None:
        return "(default)" if name.startswith("RELAY_") else "(unset)"
    if not name.startswith("RELAY_"):  # a channel's secret the routes file takes (${NAME})
        return "(set)"
    return masked_url(value)
