"""The heartbeat family's Lua (relay.heartbeats.store registers them). Each runs on
Redis's clock (``TIME``) unless a test gives the time in ARGV[1] ('' in production), and
each does bounded work: a ping touches one check; a round looks at most ARGV[4] due
checks. The state hash (``Names.heartbeat``) holds, as strings (times in ms):

    v            its format's version (1)
    state        new, up, late, started, down, paused (relay.heartbeats.model.STATES)
    since        when it entered that state
    last_ping    when the last ping came; last_signal, exit_status: what it said
    expected     when the next ping is due ('' unknown: a cron check's, filled in by
                 the evaluator, as only Python runs cronsim)
    down         when it goes down without a ping: expected + grace, or a start's
                 min(expected, start) + grace (a ping at exactly ``down`` is in time)
    start        when a start came that still waits for its success
    grace        the check's grace (from the last ping: a changed grace counts from it)
    outages      how many incidents it opened; open: the open one's number ('' none)
    reason       why it went down: missed, started, fail

An incident opens at most once per outage: a transition to down pushes a trigger only
when none is open, a success pushes the resolve of the open one; both in the same call
as the transition (the compare-and-set on the state is the script's atomicity), so any
number of evaluators and ingress nodes page once.
"""

# The time now (ms): ARGV[1], or Redis's clock.
NOW = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Push a page onto the outbox: page(pages, name, action, outage, reason, state fields,
# last ping entry or nil).
PAGE = """
local function page(pages, name, action, outage, reason, expected, last_ping, exit_status,
                    last)
  local body = ''
  if last then
    local e = cjson.decode(last)
    if type(e.short) == 'string' then body = e.short
    elseif type(e.body) == 'string' then body = e.body end
  end
  redis.call('RPUSH', pages, cjson.encode({
    name = name, action = action, outage = outage, reason = reason, at = now,
    expected = expected or '', last_ping = last_ping or '',
    exit_status = exit_status or '', last_body = body}))
end
"""

# A ping. KEYS[1] state hash, KEYS[2] pings list, KEYS[3] due zset, KEYS[4] pages list
# ARGV[1] now ('' Redis's clock), ARGV[2] name, ARGV[3] signal (success, start, fail),
# ARGV[4] period ms (0: a cron check), ARGV[5] grace ms, ARGV[6] the ping's entry (JSON:
# signal, exit_status, by, body cut to the limit, short: its first KB when longer),
# ARGV[7] a cron check's next times (ms, ascending, space-separated; the first after now
# is expected), ARGV[8] how many pings to keep, ARGV[9] the state's format version,
# ARGV[10] the exit status ('' none), ARGV[11] '1' for a run-time check: it must still be
# in KEYS[5], the run-time checks' hash (an ingress knows a removed one a little longer)
# Returns {state, expected, down} ('' unknown), {'format', v} for a newer format, or
# {'gone'} for a run-time check removed (nothing written).
PING = NOW + PAGE + """
if ARGV[11] == '1' and redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 then return {'gone'} end
local s = redis.call('HMGET', KEYS[1], 'v', 'state', 'expected', 'start', 'open', 'outages',
                     'last_ping')
if s[1] and tonumber(s[1]) > tonumber(ARGV[9]) then return {'format', s[1]} end
local state = s[2] or 'new'
local expected, start = tonumber(s[3] or ''), tonumber(s[4] or '')
local open, outages = s[5] or '', tonumber(s[6] or '0')
local signal, grace = ARGV[3], tonumber(ARGV[5])
-- keep the ping: the one before it keeps only its first KB, the list its last ARGV[8]
local head = redis.call('LINDEX', KEYS[2], 0)
if head then
  local h = cjson.decode(head)
  if type(h.short) == 'string' then
    h.body = h.short
    h.short = nil
    redis.call('LSET', KEYS[2], 0, cjson.encode(h))
  end
end
local entry = cjson.decode(ARGV[6])
entry.at = now
local raw = cjson.encode(entry)
redis.call('LPUSH', KEYS[2], raw)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[8]) - 1)
local new = state
local fields = {'v', ARGV[9], 'last_ping', now, 'last_signal', signal, 'grace', grace,
                'exit_status', ARGV[10]}
local function set(name, value)
  table.insert(fields, name)
  table.insert(fields, value)
end
if signal == 'success' then
  new = 'up'
  local due = nil
  if tonumber(ARGV[4]) > 0 then
    due = now + tonumber(ARGV[4])
  else
    for at in string.gmatch(ARGV[7], '%d+') do
      if due == nil and tonumber(at) > now then due = tonumber(at) end
    end
  end
  set('start', '')
  if due then
    set('expected', due)
    set('down', due + grace)
    redis.call('ZADD', KEYS[3], due + 1, ARGV[2])
  else  -- the evaluator fills it in at once
    set('expected', '')
    set('down', '')
    redis.call('ZADD', KEYS[3], now, ARGV[2])
  end
  if open ~= '' then
    page(KEYS[4], ARGV[2], 'resolve', tonumber(open), '', s[3], now, ARGV[10], raw)
    set('open', '')
  end
elseif signal == 'start' and state ~= 'down' then
  new = 'started'
  if state == 'new' or state == 'paused' then
    expected = nil
    set('expected', '')
  end
  local from = now  -- down at min(expected, start) + grace
  if expected and expected < now then from = expected end
  set('start', now)
  set('down', from + grace)
  redis.call('ZADD', KEYS[3], from + grace + 1, ARGV[2])
elseif signal == 'fail' and state ~= 'down' then
  new = 'down'
  set('reason', 'fail')
  set('start', '')
  set('expected', '')
  set('down', '')
  redis.call('ZREM', KEYS[3], ARGV[2])
  if open == '' then
    outages = outages + 1
    set('outages', outages)
    set('open', outages)
    page(KEYS[4], ARGV[2], 'trigger', outages, 'fail', s[3], now, ARGV[10], raw)
  end
end
if new ~= state then set('since', now) end
set('state', new)
redis.call('HSET', KEYS[1], unpack(fields))
local after = redis.call('HMGET', KEYS[1], 'expected', 'down')
if new == 'down' then return {new, '', ''} end
return {new, after[1] or '', after[2] or ''}
"""

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

# Pause (ARGV[3] 'pause') or resume ('resume') a check. Pause: nothing is expected or
# paged (an open incident stays open: the next success resolves it). Resume: only a
# paused check, to new (waiting for a first ping, as healthchecks.io's resume).
# KEYS[1] state hash, KEYS[2] due zset, KEYS[3] run-time checks hash
# ARGV[1] now ('' Redis's clock), ARGV[2] name, ARGV[3] pause or resume, ARGV[4] version
# Returns 1 when done (pause: the check was known: stored or run-time; resume: it was
# paused), else 0.
PAUSE = NOW + """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[3] == 'resume' then
  if state ~= 'paused' then return 0 end
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 'state', 'new', 'since', now, 'last_ping', '',
             'expected', '', 'down', '', 'start', '')
  return 1
end
local known = state or redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1
redis.call('HSET', KEYS[1], 'v', ARGV[4], 'state', 'paused', 'expected', '', 'down', '',
           'start', '')
if state ~= 'paused' then redis.call('HSET', KEYS[1], 'since', now) end
redis.call('ZREM', KEYS[2], ARGV[2])
if known then return 1 end
return 0
"""

# The ingress's mark that pings can arrive: KEYS[1] mark; ARGV[1] now ('' Redis's
# clock), ARGV[2] its TTL ms.
MARK = NOW + """
redis.call('SET', KEYS[1], now, 'PX', ARGV[2])
return now
"""

# A page was handed on: drop it if it still heads the outbox. KEYS[1] pages list,
# ARGV[1] the page as stored. Returns 1 when dropped.
PAGE_DONE = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
return 1
"""
