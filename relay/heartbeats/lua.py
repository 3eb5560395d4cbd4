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
    sched        the period, cron, tz and grace the deadlines were computed with (one
                 changed in the routes file: the evaluator computes them again, RESCHEDULE)
    outages      how many incidents it opened; open: the open one's number ('' none)
    resolving    the resolve it last pushed onto the outbox (taken back by a trigger
                 while it waits there unsent: see reopen)
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

IN_FLIGHT = 100  # the most pages a deliverer hands on from one read of the outbox

# Push a page onto the outbox: page(pages, name, action, outage, reason, state fields,
# last ping entry or nil); returns the page as pushed.
# reopen(pages, state hash): before a check's trigger, when the resolve it last pushed
# (the state's ``resolving``) still waits in the outbox past the first IN_FLIGHT pages (so
# no deliverer is handing it on), that resolve is taken back and the outage's number it
# resolved is returned: its incident stays open for this outage, no trigger is pushed.
# So a check flapping while the pages wait (a full queue) keeps at most its trigger and
# resolve there (promise 8). nil: push a trigger.
PAGE = """
local function page(pages, name, action, outage, reason, expected, last_ping, exit_status,
                    last)
  local body = ''
  if last then
    local e = cjson.decode(last)
    if type(e.short) == 'string' then body = e.short
    elseif type(e.body) == 'string' then body = e.body end
  end
  local raw = cjson.encode({
    name = name, action = action, outage = outage, reason = reason, at = now,
    expected = expected or '', last_ping = last_ping or '',
    exit_status = exit_status or '', last_body = body})
  redis.call('RPUSH', pages, raw)
  return raw
end
local function reopen(pages, key)
  local raw = redis.call('HGET', key, 'resolving')
  if not raw or raw == '' then return nil end
  redis.call('HSET', key, 'resolving', '')
  local at = redis.call('LPOS', pages, raw, 'RANK', -1)
  if not at or at < """ + str(IN_FLIGHT) + """ then return nil end
  redis.call('LREM', pages, -1, raw)
  return cjson.decode(raw).outage
end
"""

# A ping. KEYS[1] state hash, KEYS[2] pings list, KEYS[3] due zset, KEYS[4] pages list,
# KEYS[5] run-time checks hash, KEYS[6] named set (the names something is kept for)
# ARGV[1] now ('' Redis's clock), ARGV[2] name, ARGV[3] signal (success, start, fail),
# ARGV[4] period ms (0: a cron check), ARGV[5] grace ms, ARGV[6] the ping's entry (JSON:
# signal, exit_status, by, body cut to the limit, short: its first KB when longer),
# ARGV[7] a cron check's next times (ms, ascending, space-separated; the first after now
# is expected), ARGV[8] how many pings to keep, ARGV[9] the state's format version,
# ARGV[10] the exit status ('' none), ARGV[11] the check's schedule (kept as ``sched``),
# ARGV[12] the time (ms) ARGV[7]'s times were computed after: later than now (the
# ingress host's clock ahead of Redis's), a time between may be missing, so the
# evaluator fills the expected time in from the last ping, ARGV[13] '1' for a run-time
# check: it must still be in KEYS[5], the run-time checks' hash (an ingress knows a
# removed one a little longer)
# Returns {state, expected, down} ('' unknown), {'format', v} for a newer format, or
# {'gone'} for a run-time check removed (nothing written).
PING = NOW + PAGE + """
if ARGV[13] == '1' and redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 then return {'gone'} end
local s = redis.call('HMGET', KEYS[1], 'v', 'state', 'expected', 'start', 'open', 'outages',
                     'last_ping')
if s[1] and tonumber(s[1]) > tonumber(ARGV[9]) then return {'format', s[1]} end
redis.call('SADD', KEYS[6], ARGV[2])
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
                'exit_status', ARGV[10], 'sched', ARGV[11]}
local function set(name, value)
  table.insert(fields, name)
  table.insert(fields, value)
end
if signal == 'success' then
  new = 'up'
  local due = nil
  if tonumber(ARGV[4]) > 0 then
    due = now + tonumber(ARGV[4])
  elseif (tonumber(ARGV[12]) or 0) <= now then
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
    set('resolving', page(KEYS[4], ARGV[2], 'resolve', tonumber(open), '', s[3], now,
                          ARGV[10], raw))
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
    local again = reopen(KEYS[4], KEYS[1])
    if again then
      set('open', again)
    else
      outages = outages + 1
      set('outages', outages)
      set('open', outages)
      page(KEYS[4], ARGV[2], 'trigger', outages, 'fail', s[3], now, ARGV[10], raw)
    end
  end
end
if new ~= state then set('since', now) end
set('state', new)
redis.call('HSET', KEYS[1], unpack(fields))
local after = redis.call('HMGET', KEYS[1], 'expected', 'down')
if new == 'down' then return {new, '', ''} end
return {new, after[1] or '', after[2] or ''}
"""

# Pause (ARGV[3] 'pause') or resume ('resume') a check. Pause: nothing is expected or
# paged (an open incident stays open: the next success resolves it). Resume: only a
# paused check, to new (waiting for a first ping, as healthchecks.io's resume).
# KEYS[1] state hash, KEYS[2] due zset, KEYS[3] run-time checks hash, KEYS[4] named set
# ARGV[1] now ('' Redis's clock), ARGV[2] name, ARGV[3] pause or resume, ARGV[4] version,
# ARGV[5] '1' when the caller's routes file has the check
# Returns 1 when done (pause: the check is known: a state, a run-time check or ARGV[5];
# resume: it was paused), else 0 and nothing written (no state for a name no check has).
PAUSE = NOW + """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[3] == 'resume' then
  if state ~= 'paused' then return 0 end
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 'state', 'new', 'since', now, 'last_ping', '',
             'expected', '', 'down', '', 'start', '')
  return 1
end
if not state and ARGV[5] ~= '1' and redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then
  return 0
end
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[1], 'v', ARGV[4], 'state', 'paused', 'expected', '', 'down', '',
           'start', '')
if state ~= 'paused' then redis.call('HSET', KEYS[1], 'since', now) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# Forget a check (``pd-relay heartbeat remove``): the run-time check, its state, pings,
# due time and token; an incident it has open gets its resolve (reason 'removed') in the
# same call, so none is left open that no sender may close, and the name added again
# pages anew. KEYS[1] run-time checks hash, KEYS[2] state hash, KEYS[3] pings list,
# KEYS[4] due zset, KEYS[5] tokens hash, KEYS[6] pages list, KEYS[7] named set, KEYS[8]
# gone hash; ARGV[1] now ('' Redis's clock), ARGV[2] name. Returns 1 when a run-time
# check was removed.
REMOVE = NOW + PAGE + """
local open = redis.call('HGET', KEYS[2], 'open')
if open and open ~= '' then
  page(KEYS[6], ARGV[2], 'resolve', tonumber(open), 'removed',
       redis.call('HGET', KEYS[2], 'expected'), now, '', nil)
end
local found = redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('SREM', KEYS[7], ARGV[2])
redis.call('HDEL', KEYS[8], ARGV[2])
return found
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
