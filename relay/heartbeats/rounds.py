"""The evaluation round's Lua (relay.heartbeats.evaluator runs it; the state hash's
fields: relay.heartbeats.lua)."""

from relay.heartbeats.lua import NOW, PAGE

# An evaluation round's slice: the relay's own downtime first (when ARGV[7] is '1', the
# round's first call), then at most ARGV[4] due checks, each moved on if its time came:
# up -> late past expected; up, late, started -> down past ``down``, but not within one
# grace of the relay's return (``since``). A check whose expected time is unknown (a
# cron check just pinged) is returned for the evaluator to fill in (FILL).
# KEYS[1] due zset, KEYS[2] pages list, KEYS[3] clock string, KEYS[4] ingress mark,
# KEYS[5] the relay's gap hash
# ARGV[1] now ('' Redis's clock), ARGV[2] state hashes' prefix, ARGV[3] pings' prefix,
# ARGV[4] how many due checks at most, ARGV[5] a gap: ms without a round (or without
# the ingress's mark), ARGV[6] '1' to watch the ingress's mark, ARGV[7] '1' first call
# of a round, ARGV[8] the format version this release reads
# Returns {checks looked at, gap noticed now ('' none: else evaluator or ingress),
# the gap's ms, name, last ping, name, last ping, ... (expected times to fill in)}
ROUND = NOW + PAGE + """
local since = tonumber(redis.call('HGET', KEYS[5], 'since') or '0')
local noticed, gap_ms = '', 0
if ARGV[7] == '1' then
  local bound = tonumber(ARGV[5])
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  local mark = tonumber(redis.call('GET', KEYS[4]) or '0')
  local open = redis.call('HGET', KEYS[5], 'open')
  if now - last > bound then
    noticed, gap_ms = 'evaluator', now - last
    if last == 0 then noticed, gap_ms = 'start', 0 end
  elseif ARGV[6] == '1' and now - mark > bound then
    if not open then noticed, gap_ms = 'ingress', now - math.max(mark, since) end
    redis.call('HSET', KEYS[5], 'open', 'ingress')
  elseif open then
    redis.call('HDEL', KEYS[5], 'open')
  end
  if noticed ~= '' or redis.call('HGET', KEYS[5], 'open') then since = now end
  if noticed ~= '' then
    redis.call('HSET', KEYS[5], 'at', now, 'gap_ms', gap_ms, 'reason', noticed)
  end
  redis.call('HSET', KEYS[5], 'since', since)
  redis.call('SET', KEYS[3], now)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {#due, noticed, gap_ms}
for _, name in ipairs(due) do
  local key = ARGV[2] .. name
  local s = redis.call('HMGET', key, 'v', 'state', 'expected', 'down', 'grace', 'open',
                       'outages', 'last_ping', 'exit_status')
  local state, expected, down = s[2], tonumber(s[3] or ''), tonumber(s[4] or '')
  local grace = tonumber(s[5] or '0')
  if s[1] and tonumber(s[1]) > tonumber(ARGV[8]) then
    redis.call('ZADD', KEYS[1], now + 60000, name)  -- a newer release's: not ours
  elseif state == 'up' and not expected then
    table.insert(out, name)
    table.insert(out, s[8] or '')
    redis.call('ZADD', KEYS[1], now + 60000, name)  -- again if it is not filled in
  elseif (state == 'up' or state == 'late' or state == 'started') and down then
    if now > down and now > since + grace then
      local reason = 'missed'
      if state == 'started' then reason = 'started' end
      local fields = {'state', 'down', 'since', now, 'reason', reason, 'start', '',
                      'expected', '', 'down', ''}
      if (s[6] or '') == '' then
        local outages = tonumber(s[7] or '0') + 1
        table.insert(fields, 'outages')
        table.insert(fields, outages)
        table.insert(fields, 'open')
        table.insert(fields, outages)
        page(KEYS[2], name, 'trigger', outages, reason, s[3], s[8], s[9],
             redis.call('LINDEX', ARGV[3] .. name, 0))
      end
      redis.call('HSET', key, unpack(fields))
      redis.call('ZREM', KEYS[1], name)
    elseif now > down then  -- within one grace of the relay's return
      if state == 'up' then redis.call('HSET', key, 'state', 'late', 'since', now) end
      redis.call('ZADD', KEYS[1], since + grace + 1, name)
    elseif state == 'up' and expected and now > expected then
      redis.call('HSET', key, 'state', 'late', 'since', now)
      redis.call('ZADD', KEYS[1], down + 1, name)
    elseif state == 'up' and expected then
      redis.call('ZADD', KEYS[1], expected + 1, name)
    else
      redis.call('ZADD', KEYS[1], down + 1, name)
    end
  else
    redis.call('ZREM', KEYS[1], name)  -- new, paused, down, or gone: nothing is due
  end
end
return out
"""

# Fill in a cron check's expected time (the evaluator ran cronsim): only if it is still
# up after the same ping. KEYS[1] state hash, KEYS[2] due zset
# ARGV[1] name, ARGV[2] the last ping it was computed from (ms), ARGV[3] expected (ms)
FILL = """
local s = redis.call('HMGET', KEYS[1], 'state', 'last_ping', 'expected', 'grace')
if s[1] ~= 'up' or s[2] ~= ARGV[2] or (s[3] or '') ~= '' then return 0 end
local expected = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'expected', expected, 'down', expected + tonumber(s[4]))
redis.call('ZADD', KEYS[2], expected + 1, ARGV[1])
return 1
"""
