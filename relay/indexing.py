"""Stored formats version 3 (issue 26): the index of remembered incidents
(``Names.where``) and the total of the queues' bytes (``Names.queued_bytes``), built from
what versions 1 and 2 stored when a process of this release first starts on it
(``relay.formats``), in slices of bounded work, so that Redis answers everyone else
between them however many incidents it remembers.

Every process of this release that starts on an older store builds with the others (the
slices' progress is in Redis, ``Names.upgrading``), and none goes on before the index is
whole: the version becomes 3 in the last slice. A previous release's processes still
running meanwhile (a rolling upgrade) neither index nor count: ENQUEUE looks an
unindexed incident with an owner up on every key once (relay/scripts.py), and the
retention sweep recounts the total (``recount``) and drops the index entries of
incidents they forgot (``sweep``).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from relay.names import HELD, PER_KEY, Names
from relay.scripts import Scripts

log = logging.getLogger(__name__)

PER_SLICE = 2_000  # incidents indexed, or sets looked at, per call at most (about 2 ms)
SWEPT_PER_CALL = 1_000  # index entries the retention sweep checks per call

# One slice of the build. Started when the version is below ARGV[1] and nothing is under
# way: the index is dropped (a rollback's processes left it stale) and the held set is
# walked first, then each known key's set in the order of their ids. Each incident is
# indexed where it is remembered (in two sets, as a previous release may have left it:
# where its last event was later). Its first write (UNLINK, HSET of a small hash) adds
# little; it is meant to run at start, when Redis has room.
# KEYS[1] the version, KEYS[2] the progress hash {where, at}, KEYS[3] the index,
# KEYS[4] the keys the relay served, KEYS[5] the total of the queues' bytes, KEYS[6] the
# held set
# ARGV[1] the version built, ARGV[2] most incidents (and sets) a slice, ARGV[3] the names'
# prefix
# Returns {done (1/0), incidents indexed this slice}.
BUILD = PER_KEY + """
local wanted, most, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local HELD = '""" + HELD + """'
if tonumber(redis.call('GET', KEYS[1]) or '0') >= wanted then return {1, 0} end
local function remembered(where)
  if where == HELD then return KEYS[6] end
  return per_key(prefix, 'incidents', where)
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('UNLINK', KEYS[3])
  redis.call('HSET', KEYS[2], 'where', HELD, 'at', 0)
end
local kids = redis.call('HKEYS', KEYS[4])
table.sort(kids)
local where, at = redis.call('HGET', KEYS[2], 'where'), tonumber(redis.call('HGET', KEYS[2], 'at'))
local indexed, budget = 0, most
while where and budget > 0 do
  local found = redis.call('ZRANGE', remembered(where), at, at + budget - 1, 'WITHSCORES')
  local count = #found / 2
  for i = 1, #found, 2 do
    local incident, score = found[i], tonumber(found[i + 1])
    local other = redis.call('HGET', KEYS[3], incident)
    local there = other and other ~= where and redis.call('ZSCORE', remembered(other), incident)
    if not other or (other ~= where and (not there or tonumber(there) < score)) then
      redis.call('HSET', KEYS[3], incident, where)
      indexed = indexed + 1
    end
  end
  if count == budget then  -- the set may hold more: the next slice goes on there
    at, budget = at + count, 0
  else
    budget = budget - math.max(1, count)  -- (an empty set costs one)
    local next = nil  -- the next set: the key id after this one (HELD sorts first)
    for _, kid in ipairs(kids) do
      if kid > where then next = kid; break end
    end
    where, at = next, 0
  end
end
if where then
  redis.call('HSET', KEYS[2], 'where', where, 'at', at)
  return {0, indexed}
end
local sum = 0
for _, kid in ipairs(kids) do
  sum = sum + tonumber(redis.call('HGET', per_key(prefix, 'stats', kid), 'bytes') or '0')
end
redis.call('SET', KEYS[5], sum)
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], wanted)
return {1, indexed}
"""


def build(client: redis.Redis, names: Names, version: int) -> int:
    """Build the index and the total, slice by slice, until the store is at ``version``
    (another process may build with this one); return the incidents this one indexed."""
    script: Any = client.register_script(BUILD)
    indexed = 0
    while True:
        done, count = script(keys=[names.format, names.upgrading, names.where,
                                   names.known_keys, names.queued_bytes, names.held],
                             args=[version, PER_SLICE, names.prefix])
        indexed += int(count)
        if int(done):
            return indexed


# Drop the index entries given whose incident the set they name no longer remembers (a
# previous release's process forgot it there: it knows no index). HDEL frees memory.
# KEYS[1] the index, KEYS[2] the held set; ARGV[1] the names' prefix, then pairs:
# incident, what the index said of it
# Returns how many were dropped.
UNINDEX = PER_KEY + """
local gone = 0
for i = 2, #ARGV - 1, 2 do
  local incident, where = ARGV[i], ARGV[i + 1]
  local set = KEYS[2]
  if where ~= '""" + HELD + """' then set = per_key(ARGV[1], 'incidents', where) end
  if redis.call('HGET', KEYS[1], incident) == where
      and not redis.call('ZSCORE', set, incident) then
    redis.call('HDEL', KEYS[1], incident)
    gone = gone + 1
  end
end
return gone
"""


def sweep(client: redis.Redis, names: Names) -> int:
    """One pass over the index (the retention sweep's), ``SWEPT_PER_CALL`` entries a call:
    drop those of incidents forgotten without it; return how many went."""
    script: Any = client.register_script(UNINDEX)
    cursor, gone = 0, 0
    while True:
        cursor, found = client.hscan(names.where, cursor, count=SWEPT_PER_CALL)
        entries: dict[Any, Any] = found if isinstance(found, dict) else {}
        if entries:
            pairs = [part for entry in entries.items() for part in entry]
            gone += int(script(keys=[names.where, names.held], args=[names.prefix, *pairs]))
        if not cursor:
            return gone


def recount(client: redis.Redis, names: Names) -> int:
    """Set the total of the queues' bytes to the keys' sum (what corrects drift: a
    previous release's processes neither count it nor know it); return how far off it
    was."""
    before, now = Scripts(client).recount(keys=[names.queued_bytes, names.known_keys],
                                          args=[names.prefix])
    if int(before) != int(now):
        log.info("the total of the queues' bytes was %s, the keys' sum %s: set right",
                 before, now)
    return int(now) - int(before)
