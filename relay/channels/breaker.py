"""A breaker per channel: a channel that fails every send is left alone for a cool-down,
then tried with one message (the probe), instead of each message retrying for hours.

    closed ──(``failures`` failed sends in a row, or in the last ``window_s`` at least
      │       ``min_sends`` sends of which a share >= ``ratio`` failed)──▶ open
      ▼
    open: no send is tried until ``probe_at`` (opened + ``cooldown_s``); the courier holds
      │   each message (relay.channels.gather, group ``breaker``) instead
      ▼
    at ``probe_at`` ONE ask gets the probe (and ``probe_at`` moves a cool-down on, so a
    probe whose worker died costs a cool-down, not a stuck breaker): its success closes
    the breaker (the counters start afresh) and what was held goes out as a digest; its
    failure opens it for another cool-down.

A failure is a refusal (``Rejected``: a 4xx, a redirect) or a failure worth another try
(``RetryLater``: a 5xx, 408, a timeout, no connection). A 429 with Retry-After is the
channel asking for a pause (the courier keeps it: ``Names.channel_pause``): neither a
success nor a failure. While open, the outcome of a send that started before it opened
changes nothing; only the probe's does. Settings: ``relay.routes.channels.Breaker``
(``failures`` 0: no breaker). The clock is the caller's (``clock``), in ms, so every
worker's breaker and the tests share one notion of time; the workers' clocks should
agree within a second (NTP), which is well inside any sane cool-down.

The window's memory is bounded: ``BUCKETS`` fixed buckets of ``window_s / BUCKETS``
each (sends and failures counted per bucket; a bucket older than the window is
started afresh when reused), so the window seen is between 0.9 and 1.0 of ``window_s``.

One Redis hash per channel, ``Names.breaker(channel)``, in format ``VERSION`` (field
``v``); a hash of another version is started afresh, closed (the breaker is a heuristic
over the last minutes: forgetting it costs at most ``failures`` failed sends more):

    v          1
    state      closed | open
    since      ms: when it opened (open), when it last closed (closed; absent: never)
    probe_at   ms: the next probe may start then (open)
    probe      the number of the last probe given (each probe's token)
    run        failed sends in a row (closed)
    e0..e9     each bucket's number (ms // bucket width), s0..s9 its sends, f0..f9 its
               failures
    opened     times it opened (never reset), probes: probes given (never reset)
    held       messages held since it opened (reset when it closes)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from relay.channels.breakerstate import BUCKETS, VERSION, State, state_of
from relay.names import Names
from relay.routes.channels import Breaker

__all__ = ["BUCKETS", "VERSION", "Breakers", "State", "Verdict", "state_of"]


# Ask whether a send may be tried now.
# KEYS[1] the breaker's hash; ARGV[1] now (ms), ARGV[2] the cool-down (ms), ARGV[3] VERSION
# Returns {verdict, probe_at, probe}: verdict 0 closed (send), 1 open (hold the message
# until probe_at), 2 the probe (send it; report its outcome with its number `probe`).
ASK = """
local v = redis.call('HGET', KEYS[1], 'v')
if v and v ~= ARGV[3] then redis.call('DEL', KEYS[1]) end
local now = tonumber(ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {0, 0, 0} end
local probe_at = tonumber(redis.call('HGET', KEYS[1], 'probe_at'))
if now < probe_at then
  redis.call('HINCRBY', KEYS[1], 'held', 1)
  return {1, probe_at, 0}
end
local probe = redis.call('HINCRBY', KEYS[1], 'probe', 1)
redis.call('HINCRBY', KEYS[1], 'probes', 1)
redis.call('HSET', KEYS[1], 'probe_at', now + tonumber(ARGV[2]))
return {2, now + tonumber(ARGV[2]), probe}
"""

# Record a send's outcome.
# KEYS[1] the breaker's hash
# ARGV[1] now (ms), ARGV[2] outcome: ok | failed | pause (a 429 with Retry-After) |
# release (the probe was not sent after all: the next ask may probe), ARGV[3] the probe's
# number (0: not a probe), ARGV[4] failures (in a row), ARGV[5] ratio, ARGV[6] window
# (ms), ARGV[7] min_sends, ARGV[8] cool-down (ms), ARGV[9] VERSION, ARGV[10] BUCKETS
# Returns {change, probe_at}: change 0 nothing, 1 opened, 2 closed (the probe
# succeeded), 3 open again (the probe failed or was paused), 4 open (an outcome while
# open that is not the probe's: nothing changed; a failed or paused one is held).
RECORD = """
local key = KEYS[1]
local v = redis.call('HGET', key, 'v')
if v and v ~= ARGV[9] then redis.call('DEL', key) end
local now, outcome, probe = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local cooldown, buckets = tonumber(ARGV[8]), tonumber(ARGV[10])
local function reset()
  redis.call('HSET', key, 'run', 0)
  for i = 0, buckets - 1 do redis.call('HDEL', key, 'e' .. i, 's' .. i, 'f' .. i) end
end
if redis.call('HGET', key, 'state') == 'open' then
  local current = tonumber(redis.call('HGET', key, 'probe') or '0')
  if probe == 0 or probe ~= current then
    if outcome == 'failed' or outcome == 'pause' then redis.call('HINCRBY', key, 'held', 1) end
    return {4, tonumber(redis.call('HGET', key, 'probe_at'))}
  end
  if outcome == 'release' then
    redis.call('HSET', key, 'probe_at', now)
    return {4, now}
  end
  if outcome == 'ok' then
    redis.call('HSET', key, 'state', 'closed', 'since', now, 'held', 0)
    redis.call('HDEL', key, 'probe_at')
    reset()
    return {2, 0}
  end
  redis.call('HSET', key, 'probe_at', now + cooldown)
  redis.call('HINCRBY', key, 'held', 1)
  return {3, now + cooldown}
end
if outcome ~= 'ok' and outcome ~= 'failed' then return {0, 0} end
redis.call('HSET', key, 'v', ARGV[9])
local width = math.max(1, math.ceil(tonumber(ARGV[6]) / buckets))
local epoch = math.floor(now / width)
local slot = epoch % buckets
if tonumber(redis.call('HGET', key, 'e' .. slot) or '-1') ~= epoch then
  redis.call('HSET', key, 'e' .. slot, epoch, 's' .. slot, 0, 'f' .. slot, 0)
end
redis.call('HINCRBY', key, 's' .. slot, 1)
local run = 0
if outcome == 'failed' then
  redis.call('HINCRBY', key, 'f' .. slot, 1)
  run = redis.call('HINCRBY', key, 'run', 1)
else
  redis.call('HSET', key, 'run', 0)
end
local sends, fails = 0, 0
for i = 0, buckets - 1 do
  local e = tonumber(redis.call('HGET', key, 'e' .. i) or '-1')
  if e > epoch - buckets then
    sends = sends + tonumber(redis.call('HGET', key, 's' .. i))
    fails = fails + tonumber(redis.call('HGET', key, 'f' .. i))
  end
end
local ratio, least = tonumber(ARGV[5]), math.max(1, tonumber(ARGV[7]))
local by_run = run >= tonumber(ARGV[4])
local by_share = ratio > 0 and sends >= least and fails >= ratio * sends
if outcome == 'failed' and (by_run or by_share) then
  redis.call('HSET', key, 'state', 'open', 'since', now, 'probe_at', now + cooldown, 'held', 1)
  redis.call('HINCRBY', key, 'opened', 1)
  reset()
  return {1, now + cooldown}
end
return {0, 0}
"""

CHANGES = ("", "opened", "closed", "reopened", "open")


@dataclass(frozen=True)
class Verdict:
    """What the breaker says of a send now: ``closed`` (send), ``open`` (hold the
    message until ``probe_at_ms``), ``probe`` (send it as probe number ``probe``)."""

    state: str
    probe_at_ms: int = 0
    probe: int = 0


CLOSED = Verdict("closed")


class Breakers:
    """The channels' breakers in Redis; ``clock`` is seconds, as ``time.time``."""

    def __init__(self, client: redis.Redis, names: Names,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.names = names
        self.clock = clock
        self._ask: Any = client.register_script(ASK)
        self._record: Any = client.register_script(RECORD)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def ask(self, channel: str, settings: Breaker) -> Verdict:
        """May a send to ``channel`` be tried now? (``settings.failures`` 0: always.)"""
        if settings.failures <= 0:
            return CLOSED
        verdict, probe_at, probe = self._ask(
            keys=[self.names.breaker(channel)],
            args=[self.now_ms(), _ms(settings.cooldown_s), VERSION])
        return Verdict(("closed", "open", "probe")[int(verdict)], int(probe_at), int(probe))

    def record(self, channel: str, settings: Breaker, outcome: str,
               probe: int = 0) -> tuple[str, int]:
        """Record a send's ``outcome`` (ok, failed, pause, release); return what changed
        ("" nothing, opened, closed, reopened, open) and the next probe's time (ms)."""
        if settings.failures <= 0:
            return "", 0
        change, probe_at = self._record(
            keys=[self.names.breaker(channel)],
            args=[self.now_ms(), outcome, probe, settings.failures, settings.ratio,
                  _ms(settings.window_s), settings.min_sends, _ms(settings.cooldown_s),
                  VERSION, BUCKETS])
        return CHANGES[int(change)], int(probe_at or 0)

    def read(self, channel: str, settings: Breaker | None = None) -> State:
        return state_of(self.client.hgetall(self.names.breaker(channel)),
                        self.now_ms(), settings or Breaker())


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
