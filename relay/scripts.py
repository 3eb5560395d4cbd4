"""Lua scripts run atomically in Redis. Each is registered once per client (``register``)."""

from __future__ import annotations

from typing import Any

import redis

from relay.history.cap import KEEP_WITHIN
from relay.names import Names
from relay.owners import FORGETTING

# Store accepted events, each on its key's queue, counted, in one command; and keep each
# incident on the key it was first routed to (its follow-ups go there whatever keys were
# added or drained since). An incident is remembered on its key's sorted set, scored by
# the time of its last event, until a resolve or ARGV[1] ms without events. Each incident
# is looked up once per call and remembered with one ZADD per key (cheap for batches).
# A trigger held back (dropped by a route, suppressed by maintenance: slot 0) is
# remembered in the held set, so that its acknowledge and resolve are held with it; a
# later trigger of that incident that is sent takes it out.
# One call carries the events of several requests (relay/commit.py): each request is
# stored whole or not at all. A request that would take a key's queue over its caps
# (events: arrived plus the stats' `laned`, docs/DESIGN.md "Caps"; or bytes: queued plus in
# flight, counted in the stats' `bytes`) or every
# key's queues over the total cap stores nothing and changes nothing; its events answer
# 'full:<slot>' or 'total:<slot>' naming the key it would have overfilled.
# An event that channels hear of (a notice: relay/channels/outbox.py) is also appended to
# the outbox as '<slot>\n<notice>\n<stored event>', while the outbox holds less than
# its cap in bytes; past it the notice is skipped and counted (PagerDuty's events are
# never refused for a channel's sake).
# Each stored (or held) event's story begins here: its "accepted" step, with the slot it
# went to, unless its story is ''; one history entry holds the steps of the whole call,
# '<slot>US<story>' joined by RS (relay/history.py): one XADD, not one per event, kept
# within the history's caps (entries, and bytes: relay/history/cap.py).
# Memory is bounded (promise 8): a held trigger whose dedup_key the relay minted is not
# remembered (no one can name it but its sender, and its follow-ups would be harmless);
# each key's remembered incidents and the held ones are at most ARGV[9] per set, the
# oldest forgotten first and counted in the shed hash ('incidents', 'held'); at most 100
# incidents idle for ARGV[1] ms are forgotten per set and call.
# An incident belongs to the sender whose trigger opened it (promise 7): the owners hash
# keeps it while the incident is remembered (forgotten with it: resolve, idle, cap).
# An event of an open incident from another sender refuses its whole request
# ('owner:<its place in the request>:<the owner>'), unless the incident's owner is 'a' (anonymous:
# anyone's) or unknown (remembered by an older release: the next trigger opens it), or
# the sender's name starts with '*' (a source with `follow_up: any`).
# KEYS[3i-2] queue, KEYS[3i-1] stats, KEYS[3i] remembered incidents of the i-th configured
# key (every key of the keys file, in order); KEYS[#KEYS-6] the held incidents,
# KEYS[#KEYS-5] the outbox, KEYS[#KEYS-4] the channels' stats hash {bytes, skipped},
# KEYS[#KEYS-3] the history stream, KEYS[#KEYS-2] its ledger, KEYS[#KEYS-1] the shed
# hash, KEYS[#KEYS] the incidents' owners hash
# ARGV[1] ms an incident is remembered after its last event; ARGV[2] most events per
# queue, ARGV[3] most bytes per queue, ARGV[4] most bytes in all queues; ARGV[5] how many
# events each request has, space-separated, in order; ARGV[6] most bytes in the outbox;
# ARGV[7] most entries the history keeps (approximately); ARGV[8] most bytes it keeps;
# ARGV[9] most incidents remembered per key, and held; then 7 values per event:
#   slot: the hashed key's place i (kept unless the incident is remembered on a key), or
#         -i when the event named its key (kept, and the incident moves to it), or 0 when
#         it is held back (unless the incident is remembered on a key);
#   incident id ('' for change events);
#   'fresh' (a trigger whose dedup_key the relay minted: no need to look it up), or the
#   event_action;
#   the stored event;
#   its notice for the channels ('' when none hears of it);
#   its story's first step ('' for none)
# Returns each event's slot, in order (0: held back, not stored), or its request's refusal.
# Its first write must be one Redis refuses when memory is full (HINCRBY): Redis checks
# maxmemory only before a script's first write, and a first ZREM would let it overfill.
ENQUEUE = KEEP_WITHIN + FORGETTING + """
redis.call('HINCRBY', KEYS[2], 'stores', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#KEYS - 7) / 3
local held, outbox, told = KEYS[#KEYS - 6], KEYS[#KEYS - 5], KEYS[#KEYS - 4]
local history, ledger, shed, owners = KEYS[#KEYS - 3], KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local most_events, most_bytes, most_total = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function remembered(slot)  -- the set an incident on this slot is remembered in
  if slot > 0 then return KEYS[3 * slot] end
  return held
end
local function disown(incidents)  -- forget the owners of these incidents
  for from = 1, #incidents, 1000 do
    redis.call('HDEL', owners, unpack(incidents, from, math.min(from + 999, #incidents)))
  end
end
for i = 0, n do  -- at most 100 idle incidents a set per call, with their owners
  forget_idle(remembered(i), owners, now - tonumber(ARGV[1]), 100)
end
-- what each queue holds (events counted once a request goes there; bytes), and in all
local length, bytes, total = {}, {}, 0
for i = 1, n do
  bytes[i] = tonumber(redis.call('HGET', KEYS[3 * i - 1], 'bytes') or '0')
  total = total + bytes[i]
end
-- seen[incident]: the slot it is remembered on after this call (0: held), or false once
-- resolved; forgot[incident]: the slot whose set must drop it; drops: {set, incident};
-- owner[incident]: who opened it ('' none known); claimed[incident]: opened in this call
local chosen, queued, grew, seen, forgot, drops, notices = {}, {}, {}, {}, {}, {}, {}
local stories, owner, claimed = {}, {}, {}
local at = 10
for size in string.gmatch(ARGV[5], '%d+') do
  -- one request, tried on its own copy of what the call decided so far
  local rseen = setmetatable({}, {__index = seen})
  local rowner = setmetatable({}, {__index = owner})
  local rforgot, rqueued, radded, rchosen, rdrops, rnotices = {}, {}, {}, {}, {}, {}
  local rstories, rclaimed, owned = {}, {}, nil
  for position = 1, tonumber(size) do
    local slot, incident, action = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2]
    local sender, anyone = ARGV[at + 6], false
    if string.sub(sender, 1, 1) == '*' then sender, anyone = string.sub(sender, 2), true end
    local named = slot < 0  -- the event named its key: it goes there, and so does its incident
    if named then slot = -slot end
    if incident ~= '' then
      local known = rseen[incident]  -- in this call: its slot, false once resolved, or nil
      local where = known  -- where the incident is open (0: held), if it is
      if known == nil and action ~= 'fresh' then
        for i = 1, n do
          if redis.call('ZSCORE', KEYS[3 * i], incident) then where = i; break end
        end
        if where == nil and redis.call('ZSCORE', held, incident) then where = 0 end
        if where ~= nil then rowner[incident] = redis.call('HGET', owners, incident) or '' end
      end
      local by = where and rowner[incident]
      if by and by ~= '' and by ~= 'a' and by ~= sender and not anyone then
        owned = owned or ('owner:' .. position .. ':' .. by)  -- another sender's incident
      end
      if named then
        for i = 0, n do
          if i ~= slot then table.insert(rdrops, {remembered(i), incident}) end
        end
      elseif known then
        slot = known
      elseif where == 0 then
        if action == 'trigger' and slot > 0 then
          table.insert(rdrops, {held, incident})  -- held before, sent now
        else
          slot = 0
        end
      elseif where then
        slot = where
      end
      if action == 'resolve' then
        rseen[incident], rforgot[incident], rowner[incident] = false, slot, ''
      elseif action == 'trigger' or action == 'fresh' then
        if slot ~= 0 or action ~= 'fresh' then  -- a minted dedup_key held: not remembered
          rseen[incident] = slot
          if (rowner[incident] or '') == '' then
            rowner[incident], rclaimed[incident] = sender, true
          end
        end
      elseif where then  -- an acknowledge remembers only an open incident: one of an
        rseen[incident] = slot  -- unknown would choose where its trigger goes, and whose
      end
    end
    if slot > 0 then
      rqueued[slot] = rqueued[slot] or {}
      table.insert(rqueued[slot], ARGV[at + 3])
      radded[slot] = (radded[slot] or 0) + #ARGV[at + 3]
    end
    rchosen[#rchosen + 1] = slot
    if ARGV[at + 4] ~= '' then
      rnotices[#rnotices + 1] = slot .. '\\n' .. ARGV[at + 4] .. '\\n' .. ARGV[at + 3]
    end
    if ARGV[at + 5] ~= '' then rstories[#rstories + 1] = slot .. '\\31' .. ARGV[at + 5] end
    at = at + 7
  end
  local refused, added = owned, 0
  for slot = 1, n do
    if rqueued[slot] and not owned then
      length[slot] = length[slot] or redis.call('LLEN', KEYS[3 * slot - 2])
        + tonumber(redis.call('HGET', KEYS[3 * slot - 1], 'laned') or '0')
      if length[slot] + #rqueued[slot] > most_events or bytes[slot] + radded[slot] > most_bytes then
        refused = 'full:' .. slot
        break
      end
      added = added + radded[slot]
      refused = refused or (total + added > most_total and 'total:' .. slot) or nil
    end
  end
  if refused then
    for _ = 1, #rchosen do chosen[#chosen + 1] = refused end
  else
    for incident, slot in pairs(rseen) do seen[incident] = slot end
    for incident, slot in pairs(rforgot) do forgot[incident] = slot end
    for incident, by in pairs(rowner) do owner[incident] = by end
    for incident in pairs(rclaimed) do claimed[incident] = true end
    for _, drop in ipairs(rdrops) do drops[#drops + 1] = drop end
    for slot, raws in pairs(rqueued) do
      queued[slot] = queued[slot] or {}
      for _, raw in ipairs(raws) do table.insert(queued[slot], raw) end
      length[slot] = length[slot] + #raws
      bytes[slot] = bytes[slot] + radded[slot]
      grew[slot] = (grew[slot] or 0) + radded[slot]
    end
    total = total + added
    for _, slot in ipairs(rchosen) do chosen[#chosen + 1] = slot end
    for _, notice in ipairs(rnotices) do notices[#notices + 1] = notice end
    for _, story in ipairs(rstories) do stories[#stories + 1] = story end
  end
end
for _, drop in ipairs(drops) do redis.call('ZREM', drop[1], drop[2]) end
local remember = {}
for incident, slot in pairs(seen) do
  if slot then
    remember[slot] = remember[slot] or {}
    table.insert(remember[slot], now)
    table.insert(remember[slot], incident)
  end
end
local gone, opened = {}, {}
for incident, slot in pairs(forgot) do
  if seen[incident] ~= slot then redis.call('ZREM', remembered(slot), incident) end
  if seen[incident] == false then gone[#gone + 1] = incident end
end
disown(gone)
for incident in pairs(claimed) do
  if seen[incident] then
    opened[#opened + 1] = incident
    opened[#opened + 1] = owner[incident]
  end
end
for from = 1, #opened, 1000 do
  redis.call('HSET', owners, unpack(opened, from, math.min(from + 999, #opened)))
end
for slot, pairs_ in pairs(remember) do
  local set, added = remembered(slot), 0
  for from = 1, #pairs_, 1000 do
    added = added + redis.call('ZADD', set, unpack(pairs_, from, math.min(from + 999, #pairs_)))
  end
  if added > 0 then  -- the set grew: past the cap, at most 1,000 forgotten a call
    local over = redis.call('ZCARD', set) - tonumber(ARGV[9])
    local gone = forget_oldest(set, owners, math.min(over, 1000))
    if gone > 0 then redis.call('HINCRBY', shed, slot > 0 and 'incidents' or 'held', gone) end
  end
end
for slot, raws in pairs(queued) do
  for from = 1, #raws, 1000 do
    redis.call('RPUSH', KEYS[3 * slot - 2], unpack(raws, from, math.min(from + 999, #raws)))
  end
  redis.call('HINCRBY', KEYS[3 * slot - 1], 'accepted', #raws)
  redis.call('HINCRBY', KEYS[3 * slot - 1], 'bytes', grew[slot])
end
if #notices > 0 then
  local room = tonumber(ARGV[6]) - tonumber(redis.call('HGET', told, 'bytes') or '0')
  local kept, size, skipped = {}, 0, 0
  for _, notice in ipairs(notices) do
    if size + #notice <= room then
      kept[#kept + 1] = notice
      size = size + #notice
    else
      skipped = skipped + 1
    end
  end
  for from = 1, #kept, 1000 do
    redis.call('RPUSH', outbox, unpack(kept, from, math.min(from + 999, #kept)))
  end
  if size > 0 then redis.call('HINCRBY', told, 'bytes', size) end
  if skipped > 0 then redis.call('HINCRBY', told, 'skipped', skipped) end
end
if #stories > 0 then
  local v = table.concat(stories, '\\30')
  local id = redis.call('XADD', history, 'MAXLEN', '~', ARGV[7], '*', 's', 'accepted', 'v', v)
  keep_within(history, ledger, id, #v, tonumber(ARGV[8]))
end
return chosen
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

# Record a worker as alive until ARGV[2], forgetting workers silent since ARGV[3].
# KEYS[1] workers zset
# ARGV[1] worker id, ARGV[2] lapses at (ms), ARGV[3] stale before (ms)
HEARTBEAT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
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
# The key's queued bytes shrink by the event's (and are reset once nothing is queued).
# KEYS[1] lease, KEYS[2] inflight, KEYS[3] stats, KEYS[4] dead hash, KEYS[5] dead index,
# KEYS[6] recent deliveries zset, KEYS[7] latency histogram hash, KEYS[8] arrival queue
# (with the stats' `laned`: whether anything waits)
# ARGV[1] worker id, ARGV[2] the raw event, ARGV[3] counter to bump,
# ARGV[4] dead-letter id ('' when delivered), ARGV[5] dead-letter record,
# ARGV[6] accepted at (ms), ARGV[7] histogram bounds in ms, ascending, space-separated
# Returns 1 when done, 0 when the lease or the event was no longer ours.
FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[2] then return 0 end
redis.call('LPOP', KEYS[2])
local left = redis.call('HINCRBY', KEYS[3], 'bytes', -#ARGV[2])
local empty = redis.call('LLEN', KEYS[8]) == 0 and redis.call('LLEN', KEYS[2]) == 0
  and tonumber(redis.call('HGET', KEYS[3], 'laned') or '0') == 0
if left < 0 or (left > 0 and empty) then redis.call('HSET', KEYS[3], 'bytes', 0) end
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
# KEYS[1] dead hash, KEYS[2] dead index, KEYS[3] stats, KEYS[4] queue
# ARGV[1] dead-letter id, ARGV[2] the raw event to queue ('' = purge)
# Returns 1 when removed, 0 when the dead letter was already gone.
DROP_DEAD = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'dead_letters', -1)
if ARGV[2] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'replayed', 1)
  redis.call('HINCRBY', KEYS[3], 'bytes', #ARGV[2])
end
return 1
"""


# Forget up to ARGV[2] incidents of a remembered set (a key's, or the held ones) whose last
# event is older than ARGV[1] ms ('+inf': every one), with their owners (ENQUEUE). ZREM
# frees memory first, so it runs when Redis is full.
# KEYS[1] the set, KEYS[2] the owners hash
# Returns how many were forgotten (fewer than ARGV[2]: none is left).
FORGET = FORGETTING + """
return forget_idle(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
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
        self.heartbeat: Any = client.register_script(HEARTBEAT)
        self.finish: Any = client.register_script(FINISH)
        self.drop_dead: Any = client.register_script(DROP_DEAD)
        self.outbox_done: Any = client.register_script(OUTBOX_DONE)
        self.forget: Any = client.register_script(FORGET)

    def forget_incidents(self, names: Names, remembered: str, before: float | str) -> int:
        """Forget the incidents of a remembered set last seen before ``before`` (ms, or
        '+inf' for all), with their owners, in slices; return how many went."""
        gone = 0
        while True:
            count = int(self.forget(keys=[remembered, names.owners], args=[before, 1000]))
            gone += count
            if count < 1000:
                return gone
