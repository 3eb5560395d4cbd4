"""Lua scripts run atomically in Redis. Each is registered once per client (``register``)."""

from __future__ import annotations

from typing import Any

import redis

from relay.enqueue import ENQUEUE
from relay.names import PER_KEY, Names
from relay.owners import FORGETTING

# Change the total of every key's queued bytes (Names.queued_bytes) by `by`, as a key's
# stats `bytes` changed: change_total(total, by). Never below 0 (a previous release's
# process may have freed bytes it never counted in: the retention sweep's RECOUNT sets
# it right).
CHANGE_TOTAL = """
local function change_total(total, by)
  if by ~= 0 and redis.call('INCRBY', total, by) < 0 then redis.call('SET', total, 0) end
end
"""

# Set the total of every key's queued bytes to the sum of the keys' stats `bytes` (the
# keys the relay served, Names.known_keys), at once: what corrects drift (the retention
# sweep, and every process's start). It writes only when the total is off, and first
# with DEL, which Redis never refuses: it runs when Redis is full (a first SET was
# refused there, and with it every command's start and the sweep that frees room).
# O(keys): never on the hot path.
# KEYS[1] the total, KEYS[2] the keys the relay served; ARGV[1] the names' prefix
# Returns {the total before, the total now}.
RECOUNT = PER_KEY + """
local sum = 0
for _, kid in ipairs(redis.call('HKEYS', KEYS[2])) do
  sum = sum + tonumber(redis.call('HGET', per_key(ARGV[1], 'stats', kid), 'bytes') or '0')
end
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
if before ~= sum then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[1], sum)
end
return {before, sum}
"""

# The key's send limit now, shared by the rate scripts below (PagerDuty's dynamic
# throttling): the configured limit, or what the last 429 cut it to, climbing back by a
# tenth of the configured limit per window. Needs `now` (ms, Redis clock) and:
# KEYS[2] throttle hash {limit, at}; ARGV[1] configured limit, ARGV[2] window ms
LIMIT_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local configured, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local climb_ms = 10 * window / configured
local cut = redis.call('HMGET', KEYS[2], 'limit', 'at')
local limit = configured
if cut[1] then
  limit = math.min(configured, tonumber(cut[1]) + math.floor((now - tonumber(cut[2])) / climb_ms))
end
"""

# Take a send slot in the sliding window, on Redis's clock. A paced send (storm mode's
# lesser events: worker/lanes.py) also waits until fewer than ARGV[4] sends were made in
# the last ARGV[4] spacings (a spacing: the window over the limit now), so that lesser
# events are spread over the window and never spend it in a burst that would leave a
# critical one waiting for the window to pass.
# KEYS[1] window zset, KEYS[2] throttle hash
# ARGV[1] configured limit, ARGV[2] window ms, ARGV[3] unique member, ARGV[4] the burst
# a paced send allows (0: not paced)
# Returns 0 when a slot was taken, else the ms to wait before trying again.
RATE_ACQUIRE = LIMIT_NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local sent = redis.call('ZCARD', KEYS[1])
local burst = tonumber(ARGV[4] or '0')
if sent < limit and burst > 0 then
  local span = burst * window / limit
  local recent = redis.call('ZCOUNT', KEYS[1], now - span, '+inf')
  if recent >= burst then
    local leaving = redis.call('ZRANGEBYSCORE', KEYS[1], now - span, '+inf', 'WITHSCORES',
                               'LIMIT', recent - burst, 1)
    return math.max(1, math.ceil(tonumber(leaving[2]) + span - now))
  end
end
if sent < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
-- wait until enough of the window has expired for one more send (or the limit climbs)
local freeing = redis.call('ZRANGE', KEYS[1], sent - limit, sent - limit, 'WITHSCORES')
local wait = math.max(1, tonumber(freeing[2]) + window - now + 1)
if limit < configured then wait = math.min(wait, math.ceil(climb_ms)) end
return wait
"""

# PagerDuty answered 429: cut the key's limit to 3/4 of what it took in the last window,
# but not below a tenth of the configured limit; LIMIT_NOW climbs it back. At most one
# cut per window, so that 429s PagerDuty hands out at random do not compound cut on cut
# (a limit still too high is cut again a window later). The refused attempt holds a slot
# of the window, so PagerDuty took one fewer than the window holds.
# KEYS[1] window zset, KEYS[2] throttle hash
# ARGV[1] configured limit, ARGV[2] window ms
# Returns the limit now.
RATE_THROTTLED = LIMIT_NOW + """
if cut[2] and now - tonumber(cut[2]) < window then return limit end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local took = redis.call('ZCARD', KEYS[1]) - 1
local new = math.max(math.ceil(configured / 10), math.floor(math.min(limit, took) * 3 / 4))
redis.call('HSET', KEYS[2], 'limit', new, 'at', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(climb_ms * configured))
return new
"""

# The key's limit now (status): KEYS[1] unused, KEYS[2] throttle hash; ARGV as above.
RATE_LIMIT = LIMIT_NOW + """
return limit
"""

# What a worker needs to drain its key must run when Redis is full (maxmemory reached):
# Redis refuses a command that may grow memory (SET, ZADD, RPUSH, BLMOVE...), but lets a
# script run every command after its first write. So each script below writes first
# with a command Redis never refuses (PEXPIRE, ZREMRANGEBYSCORE, LPOP, DEL): they free
# memory or add none. docs/DESIGN.md, "A full Redis".

# Take the lease when it is free, or keep it when it is ours.
# KEYS[1] lease
# ARGV[1] worker id, ARGV[2] ttl ms
# Returns 1 when the lease is ours, else 0.
LEASE_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"""

# The dispatcher made jobs of these outbox entries: forget them, and count the outbox's
# bytes down (reset once the outbox and the taken list are empty). LREM frees memory
# first, so it runs when Redis is full.
# KEYS[1] taken list, KEYS[2] outbox, KEYS[3] channels' stats hash
# ARGV the entries
OUTBOX_DONE = """
local freed = 0
for _, entry in ipairs(ARGV) do
  if redis.call('LREM', KEYS[1], 1, entry) > 0 then freed = freed + #entry end
end
local left = redis.call('HINCRBY', KEYS[3], 'bytes', -freed)
if left < 0 or redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[3], 'bytes', 0)
end
return freed
"""

# Keep or drop a lease only while we hold it.
# KEYS[1] lease
# ARGV[1] worker id, ARGV[2] ttl ms (0 = release)
# Returns 1 when we held the lease, else 0.
LEASE_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# Finish the in-flight event: drop it, count it, and dead-letter it when rejected. Either
# is PagerDuty's final answer, so the key is no longer blocked.
# Its first write (LPOP) frees memory, so it runs when Redis is full, and so may the rest.
# The key's queued bytes shrink by the event's (and are reset once nothing is queued),
# and the total of every key's (Names.queued_bytes) with them.
# KEYS[1] lease, KEYS[2] inflight, KEYS[3] stats, KEYS[4] dead hash, KEYS[5] dead index,
# KEYS[6] recent deliveries zset, KEYS[7] latency histogram hash, KEYS[8] arrival queue
# (with the stats' `laned`: whether anything waits), KEYS[9] the total of the queues' bytes
# ARGV[1] worker id, ARGV[2] the raw event, ARGV[3] counter to bump,
# ARGV[4] dead-letter id ('' when delivered), ARGV[5] dead-letter record,
# ARGV[6] accepted at (ms), ARGV[7] histogram bounds in ms, ascending, space-separated
# Returns 1 when done, 0 when the lease or the event was no longer ours.
FINISH = CHANGE_TOTAL + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[2] then return 0 end
redis.call('LPOP', KEYS[2])
local left = redis.call('HINCRBY', KEYS[3], 'bytes', -#ARGV[2])
local empty = redis.call('LLEN', KEYS[8]) == 0 and redis.call('LLEN', KEYS[2]) == 0
  and tonumber(redis.call('HGET', KEYS[3], 'laned') or '0') == 0
local reset = left < 0 or (left > 0 and empty)
if reset then redis.call('HSET', KEYS[3], 'bytes', 0) end
change_total(KEYS[9], -#ARGV[2] - (reset and left or 0))
redis.call('HDEL', KEYS[3], 'blocked', 'blocked_at')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('HSET', KEYS[3], 'last_' .. ARGV[3] .. '_at', now)
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[3], 'dead_letters', 1)
  redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[5], now, ARGV[4])
  return 1
end
redis.call('ZADD', KEYS[6], now, n)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - 60000)
local latency = math.max(0, now - tonumber(ARGV[6]))
local bucket = '+Inf'
for bound in string.gmatch(ARGV[7], '%S+') do
  if latency <= tonumber(bound) then bucket = bound; break end
end
redis.call('HINCRBY', KEYS[7], bucket, 1)
redis.call('HINCRBY', KEYS[7], 'sum_ms', latency)
return 1
"""

# Remove a dead letter, putting it back on its key's queue (behind what is queued now)
# when a raw event is given, or dropping it for good when not.
# KEYS[1] dead hash, KEYS[2] dead index, KEYS[3] stats, KEYS[4] queue, KEYS[5] the total
# of the queues' bytes
# ARGV[1] dead-letter id, ARGV[2] the raw event to queue ('' = purge)
# Returns 1 when removed, 0 when the dead letter was already gone.
DROP_DEAD = CHANGE_TOTAL + """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'dead_letters', -1)
if ARGV[2] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'replayed', 1)
  redis.call('HINCRBY', KEYS[3], 'bytes', #ARGV[2])
  change_total(KEYS[5], #ARGV[2])
end
return 1
"""


# Forget up to ARGV[2] incidents of a remembered set (a key's, or the held ones) whose last
# event is older than ARGV[1] ms ('+inf': every one), with their owners and index
# entries (ENQUEUE). ZREM frees memory first, so it runs when Redis is full.
# KEYS[1] the set, KEYS[2] the owners hash, KEYS[3] the index
# ARGV[3] what the index says of an incident in the set (its key's id, or HELD)
# Returns how many were forgotten (fewer than ARGV[2]: none is left).
FORGET = FORGETTING + """
return forget_idle(KEYS[1], ARGV[3], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
"""

# Delivery latency histogram bounds (seconds), shared by the worker and /metrics.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# The same bounds in ms, as FINISH names its histogram fields (ARGV[7]).
LATENCY_BOUNDS_MS = tuple(str(int(bound * 1000)) for bound in LATENCY_BUCKETS_S)


class Scripts:
    """The scripts above, registered once on one client."""

    def __init__(self, client: redis.Redis) -> None:
        self.enqueue: Any = client.register_script(ENQUEUE)
        self.rate_acquire: Any = client.register_script(RATE_ACQUIRE)
        self.rate_throttled: Any = client.register_script(RATE_THROTTLED)
        self.rate_limit: Any = client.register_script(RATE_LIMIT)
        self.lease_acquire: Any = client.register_script(LEASE_ACQUIRE)
        self.lease_renew: Any = client.register_script(LEASE_RENEW)
        self.finish: Any = client.register_script(FINISH)
        self.drop_dead: Any = client.register_script(DROP_DEAD)
        self.outbox_done: Any = client.register_script(OUTBOX_DONE)
        self.forget: Any = client.register_script(FORGET)
        self.recount: Any = client.register_script(RECOUNT)

    def forget_incidents(self, names: Names, where: str, before: float | str) -> int:
        """Forget the incidents remembered at ``where`` (a key id, or ``HELD``) last seen
        before ``before`` (ms, or '+inf' for all), with their owners and index entries, in
        slices; return how many went."""
        gone, keys = 0, [names.remembered(where), names.owners, names.where]
        while True:
            count = int(self.forget(keys=keys, args=[before, 1000, where]))
            gone += count
            if count < 1000:
                return gone
