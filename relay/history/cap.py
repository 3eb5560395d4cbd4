"""The history's cap in bytes (``RELAY_HISTORY_MAX_MB``), kept by every script that adds
to the stream: ENQUEUE (relay/scripts.py), storm mode's TAKE (worker/lanes.py) and
``NOTE`` below (the worker's steps).

A cap by entries alone (``MAXLEN``) does not bound memory: one ENQUEUE entry holds the
stories of a whole call, a thousand events or more. Redis cannot trim a stream by bytes,
so the scripts keep a ledger (``Names.history_ledger``), a sorted set:

- member ``~`` scores the bytes written to the stream so far: each entry's values plus
  ``ENTRY_OVERHEAD``;
- every other member is a mark, an entry's id scored by the bytes written up to and with
  it: the entry that crossed each ``MARKS``-th of the cap (so no read of the last mark);
- once more than the cap was written after the oldest mark, marks are dropped until no
  longer so, and the stream is trimmed to the oldest mark left (``XTRIM MINID``).

So the stream holds at most the cap, one mark's step and one entry; the ledger at most
``MARKS`` + 2 members. A stream trimmed by age meanwhile (the housekeeping) leaves marks
older than its first entry: trimming to them removes nothing, and they are dropped in
turn. A ledger lost (or written by no earlier release) counts from 0: the entries before
its first mark go with the first trim.
"""

from __future__ import annotations

from relay.history.loss import LOSS

ENTRY_OVERHEAD = 64  # bytes counted per entry beyond its values: id, field names, node
MARKS = 64  # a mark every cap / MARKS bytes written

# The Lua function; needs nothing else. keep_within(stream, ledger, id, size, cap):
# count entry ``id`` of ``stream``, whose values hold ``size`` bytes; trim the stream to
# ``cap`` bytes.
# Returns the number of marks dropped (0: nothing trimmed). What the trim removes before
# the export group was delivered it is counted lost (relay.history.loss, which also gives
# ``keep_count``: the cap by entries).
KEEP_WITHIN = LOSS + f"""
local function keep_within(stream, ledger, id, size, cap)
  local step = cap / {MARKS}
  local written = tonumber(redis.call('ZINCRBY', ledger, size + {ENTRY_OVERHEAD}, '~'))
  if math.floor(written / step) > math.floor((written - size - {ENTRY_OVERHEAD}) / step) then
    redis.call('ZADD', ledger, written, id)  -- the entry crossed a step: a mark
  end
  local dropped = 0
  while true do
    local oldest = redis.call('ZRANGE', ledger, 0, 0, 'WITHSCORES')
    if oldest[1] == '~' or written - tonumber(oldest[2]) <= cap then
      if dropped > 0 and oldest[1] ~= '~' then
        trim_counted(stream, oldest[1], export_delivered(stream))
      end
      return dropped
    end
    redis.call('ZREM', ledger, oldest[1])
    dropped = dropped + 1
  end
end
"""

# Add one step to the history, within its caps (the worker's steps: relay.history).
# KEYS[1] the stream, KEYS[2] its ledger
# ARGV[1] most entries (approximately), ARGV[2] most bytes, then field, value, ...
# Returns the entry's id.
NOTE = KEEP_WITHIN + """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
keep_count(KEYS[1], tonumber(ARGV[1]))
local size = 0
for i = 4, #ARGV, 2 do size = size + #ARGV[i] end
keep_within(KEYS[1], KEYS[2], id, size, tonumber(ARGV[2]))
return id
"""
