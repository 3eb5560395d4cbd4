"""Storm mode: a key's worker sorts arrived events into lanes by severity, and merges
repeated triggers that wait (docs/DESIGN.md, "Storm mode").

The ingress appends every event to the key's arrival list (``Names.queue``), as before.
Each time the worker takes an event, one script first moves what arrived into four lanes
(critical, error, warning, info) and then moves the head of the most urgent non-empty lane
in flight. An incident's events stay in one lane while any of them waits there (a hash,
``Names.pending``, counts them), so they leave in the order they were accepted; a new
incident starts in its trigger's lane, an acknowledge or resolve in the lane of its
incident's most severe trigger. With no backlog the lanes are empty and nothing changes.

A trigger whose incident's newest waiting event is a trigger replaces it where it
stands (the newest payload, ``"m": [count, first accepted ms]`` in the stored event),
never across an acknowledge or resolve; the replaced event's story says so. Sends from
lanes below critical are paced (``Lanes.burst``). With storm mode off, events leave in
arrival order (after any left in the lanes), unpaced.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import redis

from relay.history import iso
from relay.history.cap import KEEP_WITHIN
from relay.names import Names
from relay.scripts import CHANGE_TOTAL
from relay.settings import Settings
from relay.store import Record

SORTED_PER_CALL = 50  # arrived events sorted per script call at most, and
SORTED_BYTES_PER_CALL = 256_000  # bytes of events decoded for it (2-3 ms of Redis;
# issue 24: 500 a call, in storm mode always, held Redis up to 22.9 ms)
GAPS_PER_CALL = 500  # gaps skipped per script call at most (then: MORE_GAPS; 0.6 ms
# a call on a real Redis)
MORE_GAPS = -2  # a take's lane when it stopped at GAPS_PER_CALL gaps: take again
PRUNED_PER_CALL = 1_000  # pending fields a prune call looks at (about 1 ms of Redis)
AGED_SHARE = 4  # every 4th take serves a lesser lane's head waiting past RELAY_STORM_AGE_S

# Each incident's note in the pending hash, shared by TAKE and PURGE (worker/purge.py):
# one definition of what counts an event in its incident, and of its leaving. Needs
# locals `pending` (the key's pending hash) and `now` (ms, Redis clock). A note is '<lane> <count>
# <newest's place> <t|o> <severity> <last ms>' ('-' for none).
INCIDENTS = """
local LEVEL = {critical = 0, error = 1, warning = 2, info = 3}
local decoded = 0  -- bytes of events decoded so far (TAKE's bound)
local function digest(text)  -- two 32-bit polynomial hashes: a pending field
  local a, b = 0, 0
  for i = 1, #text do
    local c = string.byte(text, i)
    a, b = (a * 31 + c) % 4294967291, (b * 37 + c) % 4294967279
  end
  return string.format('%08x%08x', a, b)
end
local function read(raw)  -- dedup_key, action, severity level and id of an alert
  decoded = decoded + #raw
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' or record.k ~= 'alert' or type(record.e) ~= 'table'
      or type(record.e.dedup_key) ~= 'string' then return nil end
  local payload = type(record.e.payload) == 'table' and record.e.payload or {}
  local id = type(record.i) == 'string' and record.i or ''
  return record.e.dedup_key, record.e.event_action, LEVEL[payload.severity] or 3, id
end
local function entry_of(field)
  local v = redis.call('HGET', pending, field)
  if not v then return {count = 0} end
  local l, c, place, kind, sev = string.match(v, '^(%S+) (%d+) (%S+) (%S) (%S) %d+$')
  return {lane = tonumber(l), count = tonumber(c), place = tonumber(place), kind = kind,
          sev = tonumber(sev)}
end
local function save(field, e)
  redis.call('HSET', pending, field, table.concat({e.lane or '-', e.count, e.place or '-',
             e.kind or '-', e.sev or '-', now}, ' '))
end
local function left(raw)  -- raw left the lanes: its incident has one fewer waiting
  local dedup_key, action = read(raw)
  if not dedup_key then return end
  local field = digest(dedup_key)
  local e = entry_of(field)
  if e.count == 0 then return end
  e.count = e.count - 1
  if e.count == 0 and action == 'resolve' then
    redis.call('HDEL', pending, field)
    return
  end
  if e.count == 0 then e.lane, e.place, e.kind = nil, nil, nil end
  save(field, e)
end
"""

# Sort arrived events into the lanes, then move the most urgent lane's head in flight.
# Its first write frees memory (LPOP), so it runs when Redis is full (scripts.py).
# KEYS[1] arrival list, KEYS[2] in-flight list, KEYS[3..6] lanes critical..info,
# KEYS[7] pending hash, KEYS[8] stats hash, KEYS[9] history stream, KEYS[10] its ledger,
# KEYS[11] the total of every key's queued bytes (a merge changes the key's)
# ARGV[1] storm mode: off, backlog or always; ARGV[2] backlog mode merges once the oldest
# waiting event is this old (ms); ARGV[3] most events to sort (and ARGV[10]: stop once
# this many bytes of events were decoded); ARGV[4] 1 to take one, 0
# to only sort; ARGV[5] most history entries (0: none); ARGV[6] the key's name (stories);
# ARGV[7] most bytes of history (relay/history/cap.py); ARGV[8] most gaps skipped (then
# it returns lane MORE_GAPS, having moved nothing: the caller takes again); ARGV[9] a
# lesser lane's head waiting this long (ms) is aged: every AGED_SHARE-th take (counted in
# stats 'turn' while one is) serves the oldest aged head instead of the most urgent lane
# Returns {events still unsorted, the event moved in flight or false, its lane (0-3; -1:
# the arrival list)}. Gaps (relay/store.py) are skipped; each list's entries popped are
# counted in the pending hash ('#a', '#0'..'#3': PURGE's places).
# A pending entry is '<lane> <count> <newest's place> <t|o> <severity> <last ms>' ('-'
# for none), the place counted from the lane's start, '#<lane>' entries it has lost.
TAKE = KEEP_WITHIN + CHANGE_TOTAL + """
local arrival, inflight, pending, stats = KEYS[1], KEYS[2], KEYS[7], KEYS[8]
local mode, most = ARGV[1], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function lane(n) return KEYS[3 + n] end
""" + INCIDENTS + """
local function first_of(raw)  -- when the event, or the first it merged, was accepted
  return tonumber(string.match(raw, '^{"t":%d+,"m":%[%d+,(%d+)%]')
                  or string.match(raw, '^{"t":(%d+)'))
end
local function lost(n) return tonumber(redis.call('HGET', pending, '#' .. n) or '0') end
local function push(n, raw)  -- the place of the event appended to lane n
  local length = redis.call('RPUSH', lane(n), raw)
  redis.call('HINCRBY', stats, 'laned', 1)
  return lost(n) + length - 1
end
local function merge(old, new)  -- the newest event, counting the repeats it replaces
  local count = tonumber(string.match(old, '^{"t":%d+,"m":%[(%d+),') or '1')
  local stamp, rest = string.match(new, '^{"t":(%d+),(.*)$')
  if not stamp or string.sub(rest, 1, 4) == '"m":' then return nil end
  return '{"t":' .. stamp .. ',"m":[' .. (count + 1) .. ',' .. first_of(old) .. '],' .. rest
end
local function story(id, dedup_key, into)
  if id == '' or ARGV[5] == '0' then return end
  local x = cjson.encode({i = id, d = dedup_key, a = 'trigger', k = ARGV[6], into = into})
  local entry = redis.call('XADD', KEYS[9], '*', 's', 'coalesced', 'k', 0, 'x', x)
  keep_count(KEYS[9], tonumber(ARGV[5]))
  keep_within(KEYS[9], KEYS[10], entry, #'coalesced' + 1 + #x, tonumber(ARGV[7]))
end
local function coalesce(e, raw, level, dedup_key, id)  -- true when raw replaced its repeat
  local at = e.place - lost(e.lane)
  local old = at >= 0 and redis.call('LINDEX', lane(e.lane), at)
  if not old then return false end
  local odk, oaction, _, oid = read(old)
  local merged = odk == dedup_key and oaction == 'trigger' and merge(old, raw)
  if not merged then return false end
  if e.count == 1 and level < e.lane then  -- alone and more urgent now: it moves up
    redis.call('LSET', lane(e.lane), at, '')
    e.lane = level
    e.place = lost(level) + redis.call('RPUSH', lane(level), merged) - 1
  else
    redis.call('LSET', lane(e.lane), at, merged)
  end
  redis.call('HINCRBY', stats, 'bytes', #merged - #old - #raw)
  change_total(KEYS[11], #merged - #old - #raw)
  redis.call('HINCRBY', stats, 'coalesced', 1)
  story(oid, dedup_key, id)
  return true
end
local function place(raw, merging)
  local dedup_key, action, level, id = read(raw)
  if not dedup_key then push(3, raw); return end
  local field = digest(dedup_key)
  local e = entry_of(field)
  if action == 'trigger' then e.sev = math.min(e.sev or 3, level) end
  if e.count > 0 and merging and action == 'trigger' and e.kind == 't'
      and coalesce(e, raw, level, dedup_key, id) then
    save(field, e)
    return
  end
  if e.count == 0 then e.lane = action == 'trigger' and level or e.sev or 1 end
  e.place, e.count = push(e.lane, raw), e.count + 1
  e.kind = action == 'trigger' and 't' or 'o'
  save(field, e)
end
if mode ~= 'off' then
  local merging = mode == 'always'
  if mode == 'backlog' then
    local oldest = now
    for _, name in ipairs({arrival, lane(0), lane(1), lane(2), lane(3)}) do
      local head = redis.call('LINDEX', name, 0)
      if head and head ~= '' then oldest = math.min(oldest, first_of(head) or now) end
    end
    merging = now - oldest >= tonumber(ARGV[2])
  end
  local popped, gaps = 0, 0
  for _ = 1, most do
    local raw = redis.call('LPOP', arrival)
    if not raw then break end
    popped = popped + 1
    if raw == '' then gaps = gaps + 1 else place(raw, merging) end
    if decoded >= tonumber(ARGV[10]) then break end
  end
  if popped > 0 then redis.call('HINCRBY', pending, '#a', popped) end
  if gaps > 0 then redis.call('HINCRBY', stats, 'laned', gaps) end  -- (a purge counted -1)
end
local unsorted = redis.call('LLEN', arrival)
if ARGV[4] ~= '1' then return {unsorted, false, -1} end
local skipped, heads, most_gaps = 0, {}, tonumber(ARGV[8])
local function gone(n, count)  -- count entries left list n's head ('#a': the arrival's)
  if count > 0 then redis.call('HINCRBY', pending, n == -1 and '#a' or '#' .. n, count) end
end
for n = 0, 3 do  -- each lane's head, past its gaps (at most ARGV[8] gaps in all)
  local gaps = 0
  while skipped < most_gaps do
    local raw = redis.call('LINDEX', lane(n), 0)
    local mark = raw and string.sub(raw, 1, 1)
    if not raw or (raw ~= '' and mark ~= '~') then heads[n] = raw; break end
    redis.call('LPOP', lane(n))
    if mark == '~' and string.find(raw, '"event_action"', 1, true) then
      left(string.sub(raw, 2))  -- an alert's gap v0.1.0 left (a change event's: uncounted)
    end
    gaps, skipped = gaps + 1, skipped + 1
  end
  gone(n, gaps)
  if skipped >= most_gaps then return {unsorted, false, """ + str(MORE_GAPS) + """} end
end
local chosen, aged, oldest = nil, nil, now - tonumber(ARGV[9])
for n = 0, 3 do
  if heads[n] then
    if not chosen then
      chosen = n
    else  -- a lesser lane's head that waited past the age bound, the oldest first
      local first = first_of(heads[n]) or now
      if first <= oldest then aged, oldest = n, first end
    end
  end
end
local turn = aged and tonumber(redis.call('HGET', stats, 'turn') or '0') + 1
if turn and turn % """ + str(AGED_SHARE) + """ == 0 then chosen = aged end
if chosen then
  local raw = redis.call('LPOP', lane(chosen))  -- (the first write: it frees memory)
  if turn then redis.call('HSET', stats, 'turn', turn) end
  if turn and chosen == aged then redis.call('HINCRBY', stats, 'aged', 1) end
  gone(chosen, 1)
  redis.call('HINCRBY', stats, 'laned', -1)
  left(raw)
  redis.call('RPUSH', inflight, raw)
  return {unsorted, raw, chosen}
end
local gaps, raw = 0, nil
repeat  -- storm mode off: the arrival list's head, past its gaps
  raw = redis.call('LPOP', arrival)
  if raw == '' then gaps = gaps + 1 end
until raw ~= '' or skipped + gaps >= most_gaps
gone(-1, gaps + ((raw and raw ~= '') and 1 or 0))
if gaps > 0 then redis.call('HINCRBY', stats, 'laned', gaps) end  -- (a purge counted -1)
if raw == '' then return {unsorted - gaps, false, """ + str(MORE_GAPS) + """} end
if not raw then return {0, false, -1} end
redis.call('RPUSH', inflight, raw)
return {unsorted - gaps - 1, raw, -1}
"""

# Forget the pending entries of incidents with nothing waiting and no event since ARGV[1]
# (their severity is kept for their acknowledge and resolve until then).
# KEYS[1] pending hash; ARGV[1] ms, ARGV[2..] the fields to look at
# Returns how many were forgotten.
PRUNE = """
local gone = 0
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  local count, last = string.match(v or '', '^%S+ (%d+) %S+ %S %S (%d+)$')
  if count == '0' and tonumber(last) < tonumber(ARGV[1]) then
    gone = gone + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return gone
"""


class Taken(NamedTuple):
    """What a take found: events still unsorted, the event moved in flight (None: none
    waits, or ``MORE_GAPS``: none found yet), and its lane (0 critical .. 3 info; -1 the
    arrival list)."""

    unsorted: int
    raw: str | None
    lane: int


class Lanes:
    """The TAKE script for one key, with its settings."""

    def __init__(self, client: redis.Redis, names: Names, kid: str, settings: Settings,
                 label: str) -> None:
        self.script: Any = client.register_script(TAKE)
        self.prune_script: Any = client.register_script(PRUNE)
        self.client = client
        self.keys = [names.queue(kid), names.inflight(kid), *names.lanes(kid),
                     names.pending(kid), names.stats(kid), names.history,
                     names.history_ledger, names.queued_bytes]
        self.settings = settings
        self.label = label

    def take(self, take: bool = True) -> Taken:
        """Sort what arrived (at most ``SORTED_PER_CALL`` events, and past
        ``SORTED_BYTES_PER_CALL`` no more), then, when ``take``, move the next event in
        flight."""
        unsorted, raw, lane = self.script(keys=self.keys, args=[
            self.settings.storm_mode, int(self.settings.storm_after_s * 1000),
            SORTED_PER_CALL, int(take), self.settings.history_max_entries, self.label,
            self.settings.history_max_bytes, GAPS_PER_CALL,
            int(self.settings.storm_age_s * 1000), SORTED_BYTES_PER_CALL])
        return Taken(int(unsorted), str(raw) if raw else None, int(lane))

    def burst(self, taken: Taken) -> int:
        """How a taken event's send is paced (``RateLimiter.acquire``): 0 (not paced) for
        a critical one, or with storm mode off; else a twelfth of the limit at once, then
        evenly (docs/DESIGN.md, "Storm mode")."""
        if taken.lane <= 0 or self.settings.storm_mode == "off":
            return 0
        return max(1, self.settings.rate_per_min // 12)

    def prune_since(self, before_ms: int) -> int:
        """Where a prune pass forgets incidents idle since: ``before_ms``, or, when the key
        keeps more than ``RELAY_INCIDENTS_MAX``, any time (every one with nothing waiting;
        promise 8: a follow-up of one goes at error priority, as an unknown's)."""
        if self.client.hlen(self.keys[6]) > self.settings.incidents_max:
            return 2**62
        return before_ms

    def prune_slice(self, cursor: int, since_ms: int) -> tuple[int, int]:
        """One slice of a prune pass (at most ``PRUNED_PER_CALL`` fields, one HSCAN and
        one script call): forget incidents with nothing waiting and no event since
        ``since_ms`` (``prune_since``). Returns the next cursor (0: the pass is over) and
        how many were forgotten."""
        cursor, found = self.client.hscan(self.keys[6], cursor, count=PRUNED_PER_CALL)
        fields = [f for f in found if not str(f).startswith("#")]
        gone = 0
        for start in range(0, len(fields), PRUNED_PER_CALL):  # (HSCAN's count is a hint)
            gone += int(self.prune_script(keys=self.keys[6:7], args=[
                since_ms, *fields[start:start + PRUNED_PER_CALL]]))
        return int(cursor), gone



def outgoing(record: Record) -> dict[str, Any]:
    """The event to send: a trigger that replaced repeats says so in its custom_details
    (``pd_relay``: how many it stands for, when the first and the last were accepted)."""
    if record.repeats <= 1:
        return record.event
    payload = record.event.get("payload")
    if not isinstance(payload, dict):
        return record.event
    details = payload.get("custom_details")
    details = dict(details) if isinstance(details, dict) else (
        {} if details is None else {"details": details})
    details["pd_relay"] = {"coalesced": record.repeats, "first": iso(record.first_ms),
                           "last": iso(record.accepted_ms)}
    return dict(record.event, payload=dict(payload, custom_details=details))

