"""The heartbeat family's Lua for a name's whole life (relay.heartbeats.store registers
it; the state hash's fields and NOW, PAGE: relay.heartbeats.lua): a run-time check added
starts clean, whatever an earlier check of that name left.
"""

from relay.heartbeats.lua import NOW, PAGE

# forget(name, state hash, pings list, due zset, tokens hash, pages list): what a check
# of that name left goes: an incident it has open gets its resolve (reason 'removed') in
# the outbox, and its state, pings, due time and ping token are dropped.
FORGET = """
local function forget(name, state, pings, due, tokens, pages)
  local open = redis.call('HGET', state, 'open')
  if open and open ~= '' then
    page(pages, name, 'resolve', tonumber(open), 'removed',
         redis.call('HGET', state, 'expected'), now, '', nil)
  end
  redis.call('DEL', state, pings)
  redis.call('ZREM', due, name)
  redis.call('HDEL', tokens, name)
end
"""

# Add a run-time check (``pd-relay heartbeat add``), clean: nothing an earlier check of
# that name left (a routes-file check taken out of the file: its token, its state, an
# open incident, which is resolved) carries over to it. KEYS[1] run-time checks hash,
# KEYS[2] state hash, KEYS[3] pings list, KEYS[4] due zset, KEYS[5] tokens hash,
# KEYS[6] pages list, KEYS[7] named set, KEYS[8] gone hash; ARGV[1] now ('' Redis's
# clock), ARGV[2] name, ARGV[3] the check's JSON. Returns 1 when added, 0 when a
# run-time check of that name is stored already.
ADD = NOW + PAGE + FORGET + """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
forget(ARGV[2], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SREM', KEYS[7], ARGV[2])
redis.call('HDEL', KEYS[8], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# A slice of the names something is kept for (relay.heartbeats.sweep): for each that
# is no check (neither the evaluating process's nor a run-time one stored now), the
# first time noted in the gone hash; once noted ARGV[4] ms ago, forgotten as REMOVE
# does (its open incident resolved, reason 'removed'). A name that is a check again
# loses its note (so workers whose routes files differ for a while do not flap); one
# with nothing kept any more leaves the set. KEYS[1] gone hash, KEYS[2] run-time checks
# hash, KEYS[3] named set, KEYS[4] due zset, KEYS[5] tokens hash, KEYS[6] pages list;
# ARGV[1] now ('' Redis's clock), ARGV[2] state hashes' prefix, ARGV[3] pings' prefix,
# ARGV[4] the delay (ms), ARGV[5] how many of the names are checks, ARGV[6..] the
# names, those first. Returns {names still noted as gone, {names forgotten}}.
SWEEP = NOW + PAGE + FORGET + """
local checks, delay, forgotten = tonumber(ARGV[5]), tonumber(ARGV[4]), {}
for i = 6, #ARGV do
  local name = ARGV[i]
  local state, pings = ARGV[2] .. name, ARGV[3] .. name
  if i - 5 <= checks or redis.call('HEXISTS', KEYS[2], name) == 1 then
    redis.call('HDEL', KEYS[1], name)
  elseif redis.call('EXISTS', state, pings) == 0
         and redis.call('HEXISTS', KEYS[5], name) == 0 then
    redis.call('SREM', KEYS[3], name)
    redis.call('HDEL', KEYS[1], name)
  else
    local first = tonumber(redis.call('HGET', KEYS[1], name) or '')
    if not first then
      redis.call('HSET', KEYS[1], name, now)
    elseif now - first >= delay then
      forget(name, state, pings, KEYS[4], KEYS[5], KEYS[6])
      redis.call('SREM', KEYS[3], name)
      redis.call('HDEL', KEYS[1], name)
      table.insert(forgotten, name)
    end
  end
end
return {redis.call('HLEN', KEYS[1]), forgotten}
"""
