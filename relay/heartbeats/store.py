"""The checks' state in Redis (layout: relay.heartbeats.lua, docs/DESIGN.md "Heartbeats").

``Heartbeats(client, names)`` is what the ingress, the evaluator, the commands and the
views use: a ping is one script call that records it and moves the state on (and, when
it ends an outage, puts the resolve in the pages' outbox in the same call); pause,
resume, run-time checks, ping tokens (only their SHA-256 is stored), the states and the
last pings. Times given and returned are seconds since the epoch, read from Redis's clock
(``clock`` only for tests: it then stands for Redis's).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from relay.auth import digest
from relay.errors import StoreFormatError, UnknownCheck
from relay.heartbeats import lua, lua_checks, rounds
from relay.heartbeats.body import cut, stored_size
from relay.heartbeats.codec import check_from_json, check_to_json, page_from_json
from relay.heartbeats.model import BODY_LIMIT, SIGNALS, Check, CheckState, Page, Ping
from relay.heartbeats.schedule import cron_times
from relay.names import Names

log = logging.getLogger(__name__)
VERSION = 1  # the state hash's and a run-time check's format ("v")
KEEP_PINGS = 10  # the last pings kept per check
SHORT_BYTES = 1000  # what an older ping keeps of its body, and a page's last_body
BY_BYTES = 100  # who pinged (a source's name, "token", an adapter's)
TOKEN_PREFIX = "pdh_"  # a ping token: long (47 characters), so nginx's log masks it
CRON_AHEAD = 3  # a cron check's next times handed to the ping script
IN_FLIGHT = lua.IN_FLIGHT  # the most pages a deliverer reads at once (lua.reopen)


def schedule(check: Check) -> str:
    """What a check's deadlines are computed from (period, cron, tz, grace), kept with its
    state: the evaluator computes them again when the routes file changed it."""
    return "|".join((str(int((check.period_s or 0) * 1000)), check.cron or "", check.tz,
                     str(int(check.grace_s * 1000))))


class Heartbeats:
    def __init__(self, client: redis.Redis, names: Names,
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.names = names
        self.clock = clock  # None: Redis's clock (production)
        self._ping = client.register_script(lua.PING)
        self._pause = client.register_script(lua.PAUSE)
        self._mark = client.register_script(lua.MARK)
        self._remove = client.register_script(lua.REMOVE)
        self._add = client.register_script(lua_checks.ADD)
        self.sweep_script = client.register_script(lua_checks.SWEEP)
        self.round_script = client.register_script(rounds.ROUND)
        self.fill_script = client.register_script(rounds.FILL)
        self.page_done_script = client.register_script(lua.PAGE_DONE)
        self.reschedule_script = client.register_script(rounds.RESCHEDULE)

    def now_arg(self) -> str:
        return "" if self.clock is None else str(round(self.clock() * 1000))

    def local_now(self) -> float:
        return time.time() if self.clock is None else self.clock()

    # pings

    def ping(self, check: Check, signal: str, body: bytes = b"", by: str = "",
             exit_status: int | None = None) -> Ping:
        """Record a ping and move the check's state on, in one script call; the answer
        says the state after it. ``body``: its first characters are kept, as many as
        take BODY_LIMIT bytes stored (the older pings keep SHORT_BYTES; control characters
        other than newline, tab and carriage return, and bytes that are not UTF-8, as
        U+FFFD: relay.heartbeats.body). UnknownCheck for a run-time check removed
        (nothing is written: a catalog read before the removal does not bring it back)."""
        if signal not in SIGNALS:
            raise ValueError(f"signal {signal!r}: want one of {', '.join(SIGNALS)}")
        entry: dict[str, Any] = {"signal": signal, "exit_status": exit_status,
                                 "by": cut(by.encode(), BY_BYTES), "body": cut(body, BODY_LIMIT)}
        if stored_size(entry["body"]) > SHORT_BYTES:
            entry["short"] = cut(body, SHORT_BYTES)
        ahead, after = "", 0
        if check.cron is not None:  # a minute back: Redis's clock may lag this host's
            after = int((self.local_now() - 60) * 1000)  # (ahead of it: the evaluator's)
            ahead = " ".join(str(int(at * 1000)) for at in cron_times(
                check.cron, check.tz, after / 1000, CRON_AHEAD))
        names = self.names
        found = self._ping(
            keys=[names.heartbeat(check.name), names.heartbeat_pings(check.name),
                  names.heartbeat_due, names.heartbeat_pages, names.heartbeats,
                  names.heartbeat_named],
            args=[self.now_arg(), check.name, signal,
                  int((check.period_s or 0) * 1000), int(check.grace_s * 1000),
                  json.dumps(entry, separators=(",", ":"), ensure_ascii=False), ahead,
                  KEEP_PINGS, VERSION,
                  "" if exit_status is None else exit_status, schedule(check), after,
                  "1" if check.origin == "cli" else ""])
        if found[0] == "gone":
            raise UnknownCheck([f"no check named {check.name} (removed)"])
        if found[0] == "format":
            raise StoreFormatError(f"heartbeat {check.name}: its state is of format "
                                   f"{found[1]}, newer than this release's ({VERSION})")
        return Ping(check.name, str(found[0]), _seconds(found[1]), _seconds(found[2]))

    def mark_ingress(self, ttl_s: float) -> None:
        """The ingress can take pings (Names.heartbeat_ingress, Redis's time, ``ttl_s``):
        every ingress node calls it every few seconds."""
        self._mark(keys=[self.names.heartbeat_ingress],
                   args=[self.now_arg(), int(ttl_s * 1000)])

    # run-time checks, pause, resume

    def add(self, check: Check) -> bool:
        """Store a run-time check; False when one of that name is stored already. It
        starts clean: the state, pings and ping token an earlier check of that name left
        (one taken out of the routes file) are dropped, and an incident it left open is
        resolved (reason ``removed``), in the same call."""
        names = self.names
        return bool(self._add(
            keys=[names.heartbeats, names.heartbeat(check.name),
                  names.heartbeat_pings(check.name), names.heartbeat_due,
                  names.heartbeat_tokens, names.heartbeat_pages, names.heartbeat_named,
                  names.heartbeat_gone],
            args=[self.now_arg(), check.name, check_to_json(check, VERSION)]))

    def remove(self, name: str) -> bool:
        """Forget a run-time check, its state, pings and token; False when there was no
        such run-time check (the state of a check gone from the routes file is dropped
        too). An incident it has open is resolved (its resolve goes in the pages' outbox
        in the same call, reason ``removed``)."""
        names = self.names
        return bool(self._remove(
            keys=[names.heartbeats, names.heartbeat(name), names.heartbeat_pings(name),
                  names.heartbeat_due, names.heartbeat_tokens, names.heartbeat_pages,
                  names.heartbeat_named, names.heartbeat_gone],
            args=[self.now_arg(), name]))

    def pause(self, name: str, in_file: bool = False) -> bool:
        """Nothing is expected or paged until a ping or ``resume``; False (nothing
        written) when the name is no check: none stored, no state, and not ``in_file``
        (the caller's routes file has it: a routes-file check never pinged)."""
        return self._toggle(name, "pause", in_file)

    def resume(self, name: str) -> bool:
        """A paused check waits for its first ping again (new); False if it was not
        paused."""
        return self._toggle(name, "resume")

    def _toggle(self, name: str, action: str, in_file: bool = False) -> bool:
        return bool(self._pause(
            keys=[self.names.heartbeat(name), self.names.heartbeat_due, self.names.heartbeats,
                  self.names.heartbeat_named],
            args=[self.now_arg(), name, action, VERSION, "1" if in_file else ""]))

    def stored_checks(self) -> list[Check]:
        """The run-time checks (a record of a format this release does not read is left
        out, and said)."""
        found = []
        for name, raw in sorted(self.client.hgetall(self.names.heartbeats).items()):
            try:
                found.append(check_from_json(str(raw), VERSION))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("heartbeat %s: run-time check not read: %s", name, exc)
        return found

    # tokens

    def new_token(self, name: str) -> str:
        """A new ping token for the check (replacing its last): returned once, only its
        SHA-256 stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.names.heartbeat_tokens, name, digest(token))
            pipe.sadd(self.names.heartbeat_named, name)  # forgotten with its check (sweep)
            pipe.execute()
        return token

    def token_matches(self, name: str, token: str) -> bool:
        stored = self.client.hget(self.names.heartbeat_tokens, name)
        return isinstance(stored, str) and hmac.compare_digest(stored, digest(token))

    def has_token(self, name: str) -> bool:
        return bool(self.client.hexists(self.names.heartbeat_tokens, name))

    def with_tokens(self, names: Sequence[str]) -> set[str]:
        """Those of ``names`` that have a ping token (one call however many)."""
        if not names:
            return set()
        found = self.client.hmget(self.names.heartbeat_tokens, list(names))
        return {name for name, stored in zip(names, found, strict=True) if stored}

    # what is stored

    def states(self, checks: Sequence[Check]) -> list[CheckState]:
        """Each check's state (a check never pinged: new)."""
        with self.client.pipeline(transaction=False) as pipe:
            for check in checks:
                pipe.hgetall(self.names.heartbeat(check.name))
            rows = pipe.execute()
        return [_state(check.name, row) for check, row in zip(checks, rows, strict=True)]

    def recent_pings(self, name: str, count: int = KEEP_PINGS) -> list[dict[str, Any]]:
        """The last pings, newest first: at (s), signal, exit_status, by, body."""
        found = []
        for raw in self.client.lrange(self.names.heartbeat_pings(name), 0, count - 1):
            entry = json.loads(raw)
            entry.pop("short", None)
            entry["at"] = entry["at"] / 1000
            found.append(entry)
        return found

    def gap(self) -> dict[str, Any]:
        """The relay's last gap as the evaluation saw it: at (s), gap_s, reason, since
        (s: no check goes down within one grace of it), open (the ingress's mark is
        missing now); {} before the first round."""
        raw = self.client.hgetall(self.names.heartbeat_gap)
        if not raw:
            return {}
        return {"at": _seconds(raw.get("at", "")), "gap_s": int(raw.get("gap_ms", 0)) / 1000,
                "reason": raw.get("reason", ""), "since": _seconds(raw.get("since", "")),
                "open": "open" in raw}

    # the pages' outbox (relay.heartbeats.evaluator)

    def pages(self, count: int) -> list[tuple[str, Page]]:
        """The oldest ``count`` pages of the outbox: (as stored, the page)."""
        return [(str(raw), page_from_json(str(raw)))
                for raw in self.client.lrange(self.names.heartbeat_pages, 0, count - 1)]

    def page_done(self, raw: str) -> bool:
        return bool(self.page_done_script(keys=[self.names.heartbeat_pages], args=[raw]))


def _seconds(value: Any) -> float | None:
    return None if value in ("", None) else int(value) / 1000


def _state(name: str, row: dict[str, str]) -> CheckState:
    return CheckState(name=name, state=row.get("state", "new"),
                      last_ping_at=_seconds(row.get("last_ping")),
                      last_signal=row.get("last_signal", ""),
                      expected_at=_seconds(row.get("expected")),
                      down_at=_seconds(row.get("down")), since=_seconds(row.get("since")),
                      outages=int(row.get("outages") or 0))
