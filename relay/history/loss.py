"""Entries lost from the record: what the history stream's caps trim before any
PostgreSQL exporter was delivered them (relay.history.pg) is counted, exactly, into
``Names.history_export`` (``lost``), by every script that trims the stream: ENQUEUE
(relay/enqueue.py), TAKE (worker/lanes.py), NOTE and ``keep_within`` (relay/history/cap.py),
the age trim (``TRIM_AGE``, the housekeeping) and SHED (relay/shed.py).

An entry is never delivered while its id is above the export group's last delivered id.
So a trim that would reach past that id first trims up to it (entries exported, or held
by an exporter: those an exporter reads back empty and counts itself, once, when it
acknowledges them), then trims the rest, whose count XTRIM answers: lost. No entry is
read or counted one by one beyond what the trim removes, and a lost entry is gone, so
never counted twice. The group keeps its last delivered id: entries after it that are
gone are simply not delivered. Without the group (no exporter ever ran), nothing is
counted and the trims are as before.

The count cap (``MAXLEN ~``) cannot say which entries it will remove; with the group, it
is kept by id instead: once the stream is ``SLACK`` entries over, the id of the last one
over is read (``XRANGE ... COUNT over``: about one entry read per entry added; at most
``TRIM_MOST`` per call, so a cap lowered comes down over calls, never in one long one). Until
then only ``XLEN`` is asked (``MAXLEN ~`` too lets a stream node's worth over the cap), so
an entry added costs about what ``XADD ... MAXLEN ~`` did.

The Lua below needs nothing else; the export hash's name is the stream's plus
``:export`` (``Names.history_export``).
"""

from __future__ import annotations

from relay.names import Names

GROUP = Names("").history_group
SLACK = 100  # entries over the count cap before it trims, as MAXLEN ~ (a stream node)
TRIM_MOST = 1_000  # entries the count cap reads and trims per script call at most (a cap
# lowered, or one process's lower than the others': the stream comes down over calls)

LOSS = f"""
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-?(%d*)$')
  return tonumber(ms), tonumber(seq ~= '' and seq or '0')
end
local function id_after(id)
  local ms, seq = id_parts(id)
  return string.format('%.0f-%.0f', ms, seq + 1)
end
local function id_less(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end
-- the export group's last delivered id; nil without the group
local function export_delivered(stream)
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if type(groups) ~= 'table' or groups.err then return nil end
  for _, group in ipairs(groups) do
    local name, last = nil, nil
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'last-delivered-id' then last = group[i + 1] end
    end
    if name == '{GROUP}' then return last end
  end
  return nil
end
local function count_lost(stream, lost)
  if lost > 0 then redis.call('HINCRBY', stream .. ':export', 'lost', lost) end
end
-- XTRIM MINID minid, counting the entries never delivered; returns how many went
local function trim_counted(stream, minid, delivered)
  if delivered then
    local after = id_after(delivered)
    if id_less(after, minid) then
      local gone = redis.call('XTRIM', stream, 'MINID', after)
      local lost = redis.call('XTRIM', stream, 'MINID', minid)
      count_lost(stream, lost)
      return gone + lost
    end
  end
  return redis.call('XTRIM', stream, 'MINID', minid)
end
-- the count cap (MAXLEN ~ maxlen), counting; returns how many went
local function keep_count(stream, maxlen)
  local over = redis.call('XLEN', stream) - maxlen
  if over < {SLACK} then return 0 end
  local delivered = export_delivered(stream)
  if not delivered then return redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen) end
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(over, {TRIM_MOST}))
  return trim_counted(stream, id_after(head[#head][1]), delivered)
end
"""

# The age trim (the housekeeping: RELAY_HISTORY_DAYS).
# KEYS[1] the stream; ARGV[1] the oldest id kept (ms). Returns how many entries went.
TRIM_AGE = LOSS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return trim_counted(KEYS[1], ARGV[1], export_delivered(KEYS[1]))
"""
