"""The gatherings' Lua scripts (relay.channels.gather): each runs atomically in Redis and
does a bounded amount of work."""

# Add notices (or an empty opening) to a gathering, opening it when none is open; an open
# one's due is pulled earlier, never later. Bounded: at most ARGV[9] lines a call.
# KEYS[1] the gathering (hash), KEYS[2] its lines (list), KEYS[3] the due sorted set,
# KEYS[4] the marks of notices parked (hash)
# ARGV[1] its member in the due set, ARGV[2] due ms, ARGV[3] mode ('park': add them;
# 'first': add them only to an open gathering, else open an empty one), ARGV[4] again ms
# (a gathering opened here opens again that long after its digest is taken; 0: not),
# ARGV[5] notices added, ARGV[6] their first accepted ms, ARGV[7] their last, ARGV[8] test
# (0|1), ARGV[9] lines kept at most, ARGV[10] the format's version, ARGV[11] now ms,
# ARGV[12] the mark ('' none), ARGV[13] n, ARGV[14..13+2n] count field, count; then lines
# Returns 1 when they were added, 0 when not ('first' opened an empty gathering: the
# caller sends them itself), -1 when the gathering is of another format's version.
PARK = """
if ARGV[12] ~= '' then
  local done = redis.call('HGET', KEYS[4], ARGV[12])
  if done then return tonumber(done) end
end
local version = redis.call('HGET', KEYS[1], 'v')
if version and version ~= ARGV[10] then return -1 end
local due = tonumber(ARGV[2])
local added = 1
if not version then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'v', ARGV[10], 'opened', ARGV[11], 'due', due, 'total', 0,
             'again', ARGV[4])
  redis.call('ZADD', KEYS[3], due, ARGV[1])
  if ARGV[3] == 'first' then added = 0 end
elseif due < tonumber(redis.call('HGET', KEYS[1], 'due')) then
  redis.call('HSET', KEYS[1], 'due', due)
  redis.call('ZADD', KEYS[3], due, ARGV[1])
end
if added == 1 and tonumber(ARGV[5]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'total', ARGV[5])
  local since = tonumber(redis.call('HGET', KEYS[1], 'since') or ARGV[6])
  local till = tonumber(redis.call('HGET', KEYS[1], 'until') or ARGV[7])
  redis.call('HSET', KEYS[1], 'since', math.min(since, tonumber(ARGV[6])),
             'until', math.max(till, tonumber(ARGV[7])))
  if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'test', 1) end
  local n = tonumber(ARGV[13])
  for i = 0, n - 1 do
    redis.call('HINCRBY', KEYS[1], ARGV[14 + 2 * i], ARGV[15 + 2 * i])
  end
  local room = tonumber(ARGV[9]) - redis.call('LLEN', KEYS[2])
  local first = 14 + 2 * n
  for i = first, math.min(#ARGV, first + room - 1) do
    redis.call('RPUSH', KEYS[2], ARGV[i])
  end
end
if ARGV[12] ~= '' then redis.call('HSET', KEYS[4], ARGV[12], added) end
return added
"""

# Take a due gathering: move it into the taken digests (a record: its fields and lines),
# or close it when it is empty; one opened with `again` opens again, empty, due then.
# KEYS[1] the gathering, KEYS[2] its lines, KEYS[3] the due set, KEYS[4] taken digests
# (hash), KEYS[5] the channels' stats (hash: the channel's digest count)
# ARGV[1] its member in the due set, ARGV[2] now ms, ARGV[3] the channel, ARGV[4] the
# group, ARGV[5] the format's version
# Returns the digest's id, '' when none was taken (not due, or closed empty), or '!' when
# the gathering is of another version (left for a release that reads it, looked at again
# in an hour).
TAKE = """
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return '' end
local version = redis.call('HGET', KEYS[1], 'v')
if version and version ~= ARGV[5] then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) + 3600000, ARGV[1])  -- not in every round
  return '!'
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
local again = tonumber(redis.call('HGET', KEYS[1], 'again') or '0')
local id = ''
if total > 0 then
  local seq = redis.call('HINCRBY', KEYS[5], ARGV[3] .. ':digests', 1)
  id = 'dg' .. seq .. '-' .. redis.call('HGET', KEYS[1], 'opened')
  redis.call('HSET', KEYS[4], ARGV[3] .. '\\31' .. id, cjson.encode({
    v = tonumber(ARGV[5]), id = id, channel = ARGV[3], group = ARGV[4],
    fields = redis.call('HGETALL', KEYS[1]), lines = redis.call('LRANGE', KEYS[2], 0, -1)}))
end
redis.call('DEL', KEYS[1], KEYS[2])
if total > 0 and again > 0 then
  local due_at = tonumber(ARGV[2]) + again
  redis.call('HSET', KEYS[1], 'v', ARGV[5], 'opened', ARGV[2], 'due', due_at, 'total', 0,
             'again', again)
  redis.call('ZADD', KEYS[3], due_at, ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return id
"""

# Push a gathering's due later (still muted when it came), when it is still open.
# KEYS[1] the gathering, KEYS[2] the due set; ARGV[1] its member, ARGV[2] due ms
# Returns 1 when it was pushed, 0 when no such gathering is open.
POSTPONE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'due', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""
