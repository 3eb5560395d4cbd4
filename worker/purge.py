"""Taking queued events out of a key's waiting lists, for ``pd-relay queue purge``
(relay/queues.py), in calls of bounded work: each call looks for at most
``PURGED_PER_CALL`` events, each at the place a read found it at, and leaves a gap there.

A place is the number of entries the list has lost at its head (popped by TAKE: ``LOST``,
kept in the key's pending hash) plus the entry's index: it stays put while the worker
takes, so a read in chunks and the purge after it agree on where each event is.
"""

from __future__ import annotations

from typing import Any

import redis

from relay.names import Names
from relay.scripts import CHANGE_TOTAL
from worker.lanes import INCIDENTS

LOST = ("#0", "#1", "#2", "#3", "#a")  # per list of Names.waiting: entries lost at its head
PURGED_PER_CALL = 16  # events a purge call looks for (each LINDEX and LSET walks the list:
# a call in the middle of a 100,000-event list took a median 2.6 ms at 25, at most 6.8)
READ_PER_CALL = 1_000  # entries a read returns
BACK, BACK_BYTES = 32, 128_000  # a purge looks back this far for an incident's newest
PURGED_BYTES_PER_CALL = 256_000  # and is given at most these bytes of events a call
ENDS_PER_CALL = 1_000  # gaps a purge call takes off its list's ends at most

# Read a waiting list from a place on: the place of its first entry returned (a place
# that already left: the head's) and at most ARGV[3] entries.
# KEYS[1] the list, KEYS[2] the key's pending hash
# ARGV[1] the list's field of entries lost (LOST), ARGV[2] the place, ARGV[3] how many
READ = """
local lost = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local place = math.max(tonumber(ARGV[2]), lost)
local at = place - lost
return {place, redis.call('LRANGE', KEYS[1], at, at + tonumber(ARGV[3]) - 1)}
"""

# Remove the given events from a key's arrival list or one of its lanes (never the one
# in flight), each looked for at the place the caller read it at, and only there: an
# empty gap stays where each stood, so that the worker's places stay right and the rest
# keeps its order. A lane's event leaves its incident at once (`left`, as when sent), so
# that the incident's next event chooses its lane again. The key's queued bytes shrink
# by theirs, and `laned` by their count (a lane's: sorted no more; an arrival gap:
# counted by the list's length until TAKE pops it). Plain gaps at either end of the list
# are taken off at once (at most ENDS_PER_CALL), so that a purged flood leaves nothing
# for status, the caps or `forget-key` to count. Its first write (HDEL) is one Redis
# never refuses, so it runs when Redis is full (relay/scripts.py says why). The previous
# release's '~' gaps left their incident when reached: TAKE still reads them.
# A place counts the entries the list has lost at its head ('#a' the arrival list's,
# '#0'..'#3' the lanes', in the pending hash) plus the index: it stays put while the
# worker takes.
# KEYS[1] the list, KEYS[2] the key's stats, KEYS[3] its pending hash, KEYS[4] the total
# of every key's queued bytes (changed with the key's: relay/scripts.py CHANGE_TOTAL)
# ARGV[1] the list's field of entries lost ('#a', '#0'..'#3'); ARGV[2] 1 for a lane;
# ARGV[3..] at most PURGED_PER_CALL pairs: place, raw event
# When a lane's purged event was its incident's newest waiting one, its note names the
# one before it in the lane, looked for at most BACK entries and BACK_BYTES bytes back
# in a call (so that a later trigger merges into it, and moves up: issue 24), or none
# (no merge into a gap).
# Returns how many were removed (fewer when some left meanwhile).
PURGE = """
local stats, pending = KEYS[2], KEYS[3]
redis.call('HDEL', stats, 'laned:never')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
""" + INCIDENTS + CHANGE_TOTAL + """
local lost = tonumber(redis.call('HGET', pending, ARGV[1]) or '0')
local looked = 0  -- bytes read back for `newest` this call
local function newest(raw, place, at)  -- raw, purged, was its incident's newest waiting
  local dedup_key = read(raw)    -- event: its note now names the one before (merges
  if not dedup_key then return end  -- into it, moves up), or none (then: no merge)
  local field = digest(dedup_key)
  local e = entry_of(field)
  if e.count == 0 or e.place ~= place then return end
  e.kind = 'o'
  for k = at - 1, math.max(0, at - """ + str(BACK) + """), -1 do
    if looked >= """ + str(BACK_BYTES) + """ then break end
    local before = redis.call('LINDEX', KEYS[1], k)
    looked = looked + #before
    local odk, action = read(before)
    if odk == dedup_key then
      e.place, e.kind = lost + k, action == 'trigger' and 't' or 'o'
      break
    end
  end
  save(field, e)
end
local removed, freed = 0, 0
for i = 3, #ARGV - 1, 2 do
  local at, raw = tonumber(ARGV[i]) - lost, ARGV[i + 1]
  if at >= 0 and raw ~= '' and redis.call('LINDEX', KEYS[1], at) == raw then
    redis.call('LSET', KEYS[1], at, '')
    removed, freed = removed + 1, freed + #raw
    if ARGV[2] == '1' then
      left(raw)
      newest(raw, tonumber(ARGV[i]), at)
    end
  end
end
local head, ends = 0, 0  -- plain gaps at either end go (they are no event's place)
while ends < """ + str(ENDS_PER_CALL) + """ and redis.call('LINDEX', KEYS[1], 0) == '' do
  redis.call('LPOP', KEYS[1])
  head, ends = head + 1, ends + 1
end
while ends < """ + str(ENDS_PER_CALL) + """ and redis.call('LINDEX', KEYS[1], -1) == '' do
  redis.call('RPOP', KEYS[1])
  ends = ends + 1
end
if head > 0 then redis.call('HINCRBY', pending, ARGV[1], head) end
local counted = ARGV[2] == '1' and -removed or ends - removed  -- (arrival gaps: -1 each)
if counted ~= 0 then redis.call('HINCRBY', stats, 'laned', counted) end
if removed == 0 then return 0 end
local left = redis.call('HINCRBY', stats, 'bytes', -freed)
if left < 0 then redis.call('HSET', stats, 'bytes', 0) end
change_total(KEYS[4], -freed - math.min(left, 0))
redis.call('HINCRBY', stats, 'purged', removed)
return removed
"""


# Take a purge's gaps out of a key's arrival list (for a rollback to v0.1.0, which reads
# a gap there as an event: README, "Upgrading"); `laned` counted each -1. One LREM: a
# scan of the list, run once by an operator's command.
# KEYS[1] the arrival list, KEYS[2] the key's stats
# Returns how many gaps were taken out.
STRIP = """
local gaps = redis.call('LREM', KEYS[1], 0, '')
if gaps > 0 then redis.call('HINCRBY', KEYS[2], 'laned', gaps) end
return gaps
"""


def strip_arrival_gaps(client: redis.Redis, names: Names, kids: list[str]) -> int:
    """Take the purge's gaps out of the keys' arrival lists (``STRIP``); how many."""
    script: Any = client.register_script(STRIP)
    return sum(int(script(keys=[names.queue(kid), names.stats(kid)])) for kid in kids)
