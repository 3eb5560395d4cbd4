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
# KEYS[6] pages list; ARGV[1] now ('' Redis's clock), ARGV[2] name, ARGV[3] the check's
# JSON. Returns 1 when added, 0 when a run-time check of that name is stored already.
ADD = NOW + PAGE + FORGET + """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
forget(ARGV[2], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""
