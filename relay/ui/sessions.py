"""Dashboard sessions: signing in makes a random id (``secrets.token_urlsafe(32)``) that
only the browser's cookie holds; Redis keeps its SHA-256 (``Names.ui_session``) with the
operator's name, the hash of the token they signed in with, the session's CSRF token and
its times. A session ends ``RELAY_UI_SESSION_HOURS`` after sign-in, after
``RELAY_UI_IDLE_MINUTES`` unused, at sign-out (its record deleted: the old cookie no
longer works), and when its operator or token leaves the routes file (``Access``).
An operator keeps at most ``RELAY_UI_SESSIONS_MAX`` sessions (the oldest go first) and
every key expires, so signing in again and again cannot grow Redis.

The record (a JSON string) carries its own version, ``v``: this release writes and reads
version 1; a record of another version is no session (its operator signs in again).

    {"v": 1, "operator": "ada", "token": "sha256:...", "csrf": "...",
     "created": 1800000000.0, "expires": 1800043200.0, "seen": 1800000000.0}
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from relay.names import Names
from relay.settings import Settings

log = logging.getLogger(__name__)
VERSION = 1  # of the stored session record
# A session's last use is written at most every TOUCH_S, or half the idle limit when that is
# shorter: it ends after between idle - touch and idle unused, so use at least every half
# limit (RELAY_UI_IDLE_MINUTES=1: every 30 s) always keeps it.
TOUCH_S = 60.0
OPEN_TRIES = 3  # runs of OPEN, each after reading the operator's sessions again

# Store a new session and keep its operator's to the cap, atomically. Every key it touches
# is declared: the records it may drop are those of the sessions KEYS[2] held when the
# caller read it (at most the cap, or once a former larger cap: each run trims KEYS[2] to
# it); a session started since (not declared) makes it write nothing and answer -1: read
# again and run again.
# KEYS[1] the session's record, KEYS[2] the operator's sessions (hashed ids by start),
# KEYS[3..] the records of the sessions KEYS[2] held
# ARGV[1] the record, ARGV[2] its TTL (ms), ARGV[3] now (s), ARGV[4] the hashed id,
# ARGV[5] the cap, ARGV[6] the sessions' TTL (ms), ARGV[7] the start before which a
# session has ended anyway (s), ARGV[8..] the hashed ids of KEYS[3..], in their order
# Returns how many sessions were dropped, or -1.
OPEN = """
local record = {[ARGV[4]] = KEYS[1]}
for i = 3, #KEYS do record[ARGV[i + 5]] = KEYS[i] end
for _, hashed in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not record[hashed] then return -1 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[7])
local over = redis.call('ZRANGE', KEYS[2], 0, -(tonumber(ARGV[5]) + 1))
for _, hashed in ipairs(over) do
  redis.call('DEL', record[hashed])
  redis.call('ZREM', KEYS[2], hashed)
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return #over
"""


@dataclass(frozen=True)
class Session:
    operator: str
    token: str  # the hash of the token its operator signed in with
    csrf: str  # the token every form of this session carries
    created: float
    expires: float
    seen: float


def hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, client: redis.Redis, settings: Settings,
                 clock: Callable[[], float]) -> None:
        self.client = client
        self.names = Names(settings.prefix)
        self.lifetime_s = settings.ui_session_hours * 3600
        self.idle_s = settings.ui_idle_minutes * 60
        self.touch_s = min(TOUCH_S, self.idle_s / 2)
        self.cap = settings.ui_sessions_max
        self.clock = clock
        self._open: Any = client.register_script(OPEN)

    def open(self, operator: str, token_hash: str) -> str:
        """Start a session for ``operator``; return its id (for the cookie only)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(operator, token_hash, secrets.token_urlsafe(32), now,
                          now + self.lifetime_s, now)
        record, key = self.record(session), self.names.ui_session(hashed(session_id))
        started = self.names.ui_sessions(operator)
        for _ in range(OPEN_TRIES):
            held = [h.decode() if isinstance(h, bytes) else str(h)
                    for h in self.client.zrange(started, 0, -1)]
            dropped = int(self._open(
                keys=[key, started, *(self.names.ui_session(h) for h in held)],
                args=[record, self.ttl_ms(session, now), now, hashed(session_id), self.cap,
                      int(self.lifetime_s * 1000), now - self.lifetime_s, *held]))
            if dropped >= 0:
                break
        else:
            raise redis.WatchError(f"operator {operator}: sessions started meanwhile "
                                   f"{OPEN_TRIES} times: sign in again")
        if dropped:
            log.info(
                "operator %s: %s oldest session(s) ended (RELAY_UI_SESSIONS_MAX=%s)",
                operator, dropped, self.cap)
        return session_id

    def find(self, session_id: str) -> Session | None:
        """The live session of ``session_id``, its use noted; None when there is none
        (never was, signed out, expired, dropped, or stored by another version)."""
        key = self.names.ui_session(hashed(session_id))
        raw = self.client.get(key)
        session = self.parse(raw) if raw else None
        if session is None:
            return None
        now = self.clock()
        if now >= session.expires or now - session.seen >= self.idle_s:
            self.close(session_id, session)
            return None
        if now - session.seen >= self.touch_s:  # idle from now; xx: a sign-out meanwhile wins
            session = Session(session.operator, session.token, session.csrf,
                              session.created, session.expires, now)
            self.client.set(key, self.record(session), px=self.ttl_ms(session, now), xx=True)
        return session

    def close(self, session_id: str, session: Session | None = None) -> None:
        """End a session (sign-out): its record goes, so its cookie no longer works."""
        key = self.names.ui_session(hashed(session_id))
        if session is None:
            raw = self.client.get(key)
            session = self.parse(raw) if raw else None
        self.client.delete(key)
        if session is not None:
            self.client.zrem(self.names.ui_sessions(session.operator), hashed(session_id))

    def ttl_ms(self, session: Session, now: float) -> int:
        return max(1, int(min(self.idle_s, session.expires - now) * 1000))

    @staticmethod
    def record(session: Session) -> str:
        return json.dumps({"v": VERSION, "operator": session.operator, "token": session.token,
                           "csrf": session.csrf, "created": session.created,
                           "expires": session.expires, "seen": session.seen})

    @staticmethod
    def parse(raw: str | bytes) -> Session | None:
        try:
            found = json.loads(raw)
            if not isinstance(found, dict) or found.get("v") != VERSION:
                return None
            return Session(str(found["operator"]), str(found["token"]), str(found["csrf"]),
                           float(found["created"]), float(found["expires"]),
                           float(found["seen"]))
        except (ValueError, KeyError, TypeError):
            return None
