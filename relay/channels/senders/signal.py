"""Signal through signal-cli (https://github.com/AsamK/signal-cli): run as
``COMMAND -o json -a ACCOUNT send --message-from-stdin RECIPIENT... -g GROUP...``, an
argument list (never a shell, so nothing in a message or a recipient is a command),
the message on standard input (so it is in no process list), with the channel's
timeout (the whole process group is killed past it) and an environment without the
relay's own settings and secrets.

signal-cli's documented exit codes: 0 sent (to at least one recipient: those that
failed are listed in its JSON output), 1 an error the user can fix (and every
recipient failed), 2 an unexpected error, 3 a server or IO error, 4 untrusted keys, 5
rate limited, 6 a CAPTCHA rejected. 2, 3 and 5 retry (5 after its ``retryAfterSeconds``),
as does 1 when its output says a recipient failed for the network or a rate limit;
the others are refused. Recipients that have it are remembered (``progress``), so a
retry sends to the rest only.
"""

from __future__ import annotations

import json
import os
import signal as signals
import subprocess
from typing import Any

from relay.channels.senders import progress
from relay.channels.senders.common import masked
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel

RETRY_CODES = {2: "unexpected error", 3: "server or IO error", 5: "rate limited"}
REFUSED_CODES = {1: "user error", 4: "untrusted key", 6: "CAPTCHA rejected"}
AGAIN = ("NETWORK_FAILURE", "RATE_LIMIT_FAILURE")  # a recipient's failures worth a retry
KEPT_OUT = ("RELAY_", "PD_RELAY_")  # the environment signal-cli does not get


def argv(channel: Channel, recipients: list[str]) -> list[str]:
    people = [r for r in recipients if not r.startswith("group:")]
    groups = [r.removeprefix("group:") for r in recipients if r.startswith("group:")]
    return [channel.command, "-o", "json", "-a", channel.account, "send",
            "--message-from-stdin", *people, *(["-g", *groups] if groups else [])]


def send(channel: Channel, body: dict[str, Any]) -> str:
    had = progress.done()
    left = [r for r in channel.to if r not in had]
    if not left:
        return f"sent before to all {len(channel.to)} recipient(s)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(KEPT_OUT)}
    try:
        process = subprocess.Popen(argv(channel, left), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                   start_new_session=True)
    except OSError as exc:  # not found, not executable
        raise Rejected(f"signal-cli could not run: {type(exc).__name__}: "
                       f"{masked(channel, exc.strerror or '')}") from None
    try:
        out, err = process.communicate(body["text"].encode(), timeout=channel.timeout_s)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise RetryLater(f"signal-cli: no answer within {channel.timeout_s:g} s") from None
    code = process.returncode
    results = _results(out)
    again = [r for r in results if r.get("type") in AGAIN]
    after = max((float(r["retryAfterSeconds"]) for r in again
                 if isinstance(r.get("retryAfterSeconds"), int | float)), default=None)
    said = masked(channel, (err.decode(errors="replace").strip().splitlines() or [""])[-1])
    if code == 0:
        failed = [r for r in left if any(_is(r, result) for result in results
                                         if result.get("type") != "SUCCESS")]
        progress.mark(*(r for r in left if r not in failed))
        if any(_is(r, result) for r in left for result in again):
            raise RetryLater(f"signal-cli: {len(again)} recipient(s) to try again", None,
                             _summary(channel, results), after)
        return "sent" + (f"; {_summary(channel, results)}" if failed else "")
    if code in RETRY_CODES or code < 0 or (code == 1 and again):
        reason = RETRY_CODES.get(code) or (
            "a recipient's network failure or rate limit" if code == 1 else f"exit {code}")
        raise RetryLater(f"signal-cli: {reason}", None,
                         _summary(channel, results) or said, after)
    reason = REFUSED_CODES.get(code, f"exit {code}")
    raise Rejected(f"signal-cli: {reason}", None, _summary(channel, results) or said)


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signals.SIGKILL)
    except OSError:
        process.kill()
    process.communicate()


def _results(out: bytes) -> list[dict[str, Any]]:
    """The per-recipient results of signal-cli's JSON output ([] when there are none)."""
    for line in reversed(out.decode(errors="replace").splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and isinstance(found.get("results"), list):
            return [r for r in found["results"] if isinstance(r, dict)]
    return []


def _is(recipient: str, result: dict[str, Any]) -> bool:
    """Whether ``result`` is for ``recipient`` as the channel names it: signal-cli names a
    result's recipient by all it knows of it (uuid, number and username), whichever of
    them the command line gave; a group's members' results by the group."""
    if result.get("groupId"):
        return recipient == f"group:{result['groupId']}"
    address = result.get("recipientAddress") or {}
    if not isinstance(address, dict):
        return False
    names = {str(address.get("number") or ""), str(address.get("uuid") or "").lower(),
             f"u:{address.get('username') or ''}"}
    return recipient in names or recipient.lower().removeprefix("pni:") in names


def _summary(channel: Channel, results: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        kind = str(result.get("type", "?"))
        counts[kind] = counts.get(kind, 0) + 1
    return masked(channel, ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
