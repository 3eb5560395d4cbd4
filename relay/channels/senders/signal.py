"""Signal through signal-cli (https://github.com/AsamK/signal-cli): run as
``COMMAND -o json -a ACCOUNT send --message-from-stdin RECIPIENT... -g GROUP...``, an
argument list (never a shell, so nothing in a message or a recipient is a command),
the message on standard input (so it is in no process list), with the channel's
timeout (the whole process group is killed past it), its output read within a bound (the
last 64 KiB of each stream kept) and an environment without the relay's own settings and
secrets.

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
import threading
import time
from typing import IO, Any

from relay.channels.senders import progress
from relay.channels.senders.common import masked
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel

RETRY_CODES = {2: "unexpected error", 3: "server or IO error", 5: "rate limited"}
REFUSED_CODES = {1: "user error", 4: "untrusted key", 6: "CAPTCHA rejected"}
AGAIN = ("NETWORK_FAILURE", "RATE_LIMIT_FAILURE")  # a recipient's failures worth a retry
KEPT_OUT = ("RELAY_", "PD_RELAY_")  # the environment signal-cli does not get
OUTPUT_KEPT = 64 * 1024  # bytes of each of its streams read and kept: the last ones
KILL_WAIT_S = 5.0


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
        out, err = _answer(process, body["text"].encode(), channel.timeout_s)
    except subprocess.TimeoutExpired:
        raise RetryLater(f"signal-cli: no answer within {channel.timeout_s:g} s") from None
    code = process.returncode
    results = _results(out)
    again = [r for r in results if r.get("type") in AGAIN]
    after = max((float(r["retryAfterSeconds"]) for r in again
                 if isinstance(r.get("retryAfterSeconds"), int | float)), default=None)
    # Signal's rate limit, told as a provider's 429: the courier pauses the channel for
    # its retryAfterSeconds and slows its pace (relay.channels.jobs), no breaker failure
    limited = 429 if code == 5 or any(r.get("type") == "RATE_LIMIT_FAILURE"
                                      for r in again) else None
    said = masked(channel, (err.decode(errors="replace").strip().splitlines() or [""])[-1])
    if code == 0:
        failed = [r for r in left if any(_is(r, result) for result in results
                                         if result.get("type") != "SUCCESS")]
        progress.mark(*(r for r in left if r not in failed))
        if any(_is(r, result) for r in left for result in again):
            raise RetryLater(f"signal-cli: {len(again)} recipient(s) to try again", limited,
                             _summary(channel, results), after)
        return "sent" + (f"; {_summary(channel, results)}" if failed else "")
    if code in RETRY_CODES or code < 0 or (code == 1 and again):
        reason = RETRY_CODES.get(code) or (
            "a recipient's network failure or rate limit" if code == 1 else f"exit {code}")
        raise RetryLater(f"signal-cli: {reason}", limited,
                         _summary(channel, results) or said, after)
    reason = REFUSED_CODES.get(code, f"exit {code}")
    raise Rejected(f"signal-cli: {reason}", None, _summary(channel, results) or said)


def _answer(process: subprocess.Popen[bytes], text: bytes,
            timeout_s: float) -> tuple[bytes, bytes]:
    """Give ``process`` the message and read what it writes, the last ``OUTPUT_KEPT``
    bytes of each stream only (its JSON answer is its last line), within ``timeout_s``;
    past it the process group is killed and TimeoutExpired raised."""
    deadline = time.monotonic() + timeout_s
    out, err = bytearray(), bytearray()
    helpers = [threading.Thread(target=_give, args=(process.stdin, text), daemon=True),
               threading.Thread(target=_tail, args=(process.stdout, out), daemon=True),
               threading.Thread(target=_tail, args=(process.stderr, err), daemon=True)]
    for helper in helpers:
        helper.start()
    try:
        process.wait(timeout_s)
        for helper in helpers:  # a child it left may hold its output open
            helper.join(max(0.0, deadline - time.monotonic()))
        if any(helper.is_alive() for helper in helpers):
            raise subprocess.TimeoutExpired(process.args, timeout_s)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise
    return bytes(out), bytes(err)


def _give(stream: IO[bytes] | None, text: bytes) -> None:
    """Write the message and close the process's input (it may not read it: it exited,
    or was killed; its answer, or its timeout, says why)."""
    if stream is None:
        return
    try:
        stream.write(text)
    except OSError:
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


def _tail(stream: IO[bytes] | None, kept: bytearray) -> None:
    """Read ``stream`` to its end, keeping its last ``OUTPUT_KEPT`` bytes; close it there
    (only this thread reads or closes it: no descriptor closed under a read)."""
    if stream is None:
        return
    with stream:
        descriptor = stream.fileno()
        for chunk in iter(lambda: os.read(descriptor, 65536), b""):
            kept += chunk
            del kept[:-OUTPUT_KEPT]


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group and wait for its leader (a bounded time: killed is killed).
    Its output's readers end when the last writer is gone (a process that left the
    group may keep one waiting as long as it lives: a daemon thread, not this send)."""
    try:
        os.killpg(process.pid, signals.SIGKILL)
    except OSError:
        process.kill()
    try:
        process.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        pass


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
