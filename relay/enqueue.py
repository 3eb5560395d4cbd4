"""ENQUEUE, the ingress's one script: what it stores of a call's events, and how it finds
their incidents' keys without looking at every key (issue 26). Registered with the
others by ``relay.scripts.Scripts``."""

from __future__ import annotations

from relay.history.cap import KEEP_WITHIN
from relay.names import HELD, PER_KEY
from relay.owners import FORGETTING

# Store accepted events, each on its key's queue, counted, in one command; and keep each
# incident on the key it was first routed to (its follow-ups go there whatever keys were
# added or drained since). Its work grows with the events, not with the keys configured
# (issue 26): it touches only the keys its events go to.
# An incident is remembered on its key's sorted set, scored by the time of its last
# event, until a resolve or ARGV[1] ms without events; the index (Names.where) says on
# which key's set (or '-': the held set), so that one HGET finds it. An incident found
# idle past ARGV[1] ms is forgotten there and then (set, owner, index) and reads as
# unknown; the others idle are forgotten by the retention sweep (relay/housekeeping) in
# slices, or past the per-set cap below. An incident a previous release's process
# remembered without indexing it (a rolling upgrade), or moved from the set the index
# names (an event naming another key, a held trigger sent), but whose owner is known is
# looked for on every known key (Names.known_keys) once, and indexed. Each incident is looked up
# once per call and remembered with one ZADD per key (cheap for batches).
# A trigger held back (dropped by a route, suppressed by maintenance: no key) is
# remembered in the held set, so that its acknowledge and resolve are held with it; a
# later trigger of that incident that is sent takes it out.
# One call carries the events of several requests (relay/commit.py): each request is
# stored whole or not at all. A request that would take a key's queue over its caps
# (events: arrived plus the stats' `laned`, docs/DESIGN.md "Caps"; or bytes: queued plus in
# flight, counted in the stats' `bytes`) or every key's queues over the total cap (one
# counter, Names.queued_bytes, that every script changing a key's `bytes` changes with
# it) stores nothing and changes nothing; its events answer 'full:<slot>' or
# 'total:<slot>' naming the key it would have overfilled.
# An event that channels hear of (a notice: relay/channels/outbox.py) is also appended to
# the outbox as '<slot>\n<notice>\n<stored event>', while the outbox holds less than
# its cap in bytes; past it the notice is skipped and counted (PagerDuty's events are
# never refused for a channel's sake).
# Each stored (or held) event's story begins here: its "accepted" step, with the slot it
# went to, unless its story is ''; one history entry holds the steps of the whole call,
# '<slot>US<story>' joined by RS (relay/history.py): one XADD, not one per event, kept
# within the history's caps (entries, and bytes: relay/history/cap.py).
# Each key given events is named once on the wake channel (ARGV[11]: PUBLISH).
# A key's slot is its place in this process's keys file (from 1; 0: held back): each
# event's is given; an incident's key that no event of the call named is looked up in the
# slots hash of this keys file (KEYS[11], relay/store.py), and one that is not there
# (another keys file's key) is left as if unknown (as the release before, which looked
# for incidents on the configured keys only).
# Memory is bounded (promise 8): a held trigger whose dedup_key the relay minted is not
# remembered (no one can name it but its sender, and its follow-ups would be harmless);
# each key's remembered incidents and the held ones are at most ARGV[9] per set, the
# oldest forgotten first and counted in the shed hash ('incidents', 'held').
# An incident belongs to the sender whose trigger opened it (promise 7): the owners hash
# keeps it while the incident is remembered (forgotten with it: resolve, idle, cap).
# An event of an open incident from another sender refuses its whole request
# ('owner:<its place in the request>:<the owner>'), unless the incident's owner is 'a' (anonymous:
# anyone's) or unknown (remembered by an older release: the next trigger opens it), or
# the sender's name starts with '*' (a source with `follow_up: any`).
# KEYS[1] the held incidents, KEYS[2] the outbox, KEYS[3] the channels' stats hash {bytes,
# skipped}, KEYS[4] the history stream, KEYS[5] its ledger, KEYS[6] the shed hash,
# KEYS[7] the incidents' owners hash, KEYS[8] their index, KEYS[9] the total of the
# queues' bytes, KEYS[10] the keys the relay served, KEYS[11] this keys file's slots
# (key id -> slot). A key's queue, stats and incidents
# are named from its id by relay/names.py's PER_KEY, with the prefix ARGV[10].
# ARGV[1] ms an incident is remembered after its last event; ARGV[2] most events per
# queue, ARGV[3] most bytes per queue, ARGV[4] most bytes in all queues; ARGV[5] how many
# events each request has, space-separated, in order; ARGV[6] most bytes in the outbox;
# ARGV[7] most entries the history keeps (approximately); ARGV[8] most bytes it keeps;
# ARGV[9] most incidents remembered per key, and held; ARGV[10] the names' prefix;
# ARGV[11] the wake channel; then 8 values per event:
#   slot: the hashed key's place i (kept unless the incident is remembered on a key), or
#         -i when the event named its key (kept, and the incident moves to it), or 0 when
#         it is held back (unless the incident is remembered on a key);
#   incident id ('' for change events);
#   'fresh' (a trigger whose dedup_key the relay minted: no need to look it up), or the
#   event_action;
#   the stored event;
#   its notice for the channels ('' when none hears of it);
#   its story's first step ('' for none);
#   who sends it (relay/owners.py owner_of);
#   the id of the key its slot names ('' for 0)
# Returns each event's slot, in order (0: held back, not stored), or its request's
# refusal.
# Its first write must be one Redis refuses when memory is full (INCRBY): Redis checks
# maxmemory only before a script's first write, and a first ZREM would let it overfill.
ENQUEUE = KEEP_WITHIN + FORGETTING + PER_KEY + """
local held, outbox, told = KEYS[1], KEYS[2], KEYS[3]
local history, ledger, shed, owners = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local index, queued_bytes, known, slots = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local total = tonumber(redis.call('INCRBY', queued_bytes, 0))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idle_before = now - tonumber(ARGV[1])
local prefix, HELD = ARGV[10], '""" + HELD + """'
local most_events, most_bytes, most_total = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function remembered(kid)  -- the set an incident on this key (or held) is remembered in
  if kid == HELD then return held end
  return per_key(prefix, 'incidents', kid)
end
local slot_of = {[HELD] = 0}  -- key id -> slot (false: not in this keys file)
local function slot(kid)
  if slot_of[kid] == nil then
    slot_of[kid] = tonumber(redis.call('HGET', slots, kid) or '') or false
  end
  return slot_of[kid]
end
local function search(incident)  -- remembered by a previous release's process, unindexed
  for _, kid in ipairs(redis.call('HKEYS', known)) do
    if redis.call('ZSCORE', remembered(kid), incident) then return kid end
  end
  if redis.call('ZSCORE', held, incident) then return HELD end
  redis.call('HDEL', owners, incident)  -- an owner of nothing remembered
  return nil
end
-- located[incident]: {where it is remembered (a key id or HELD), its owner ('' none
-- known), whether the index says so}, or false when it is not (Redis's state before
-- this call's writes)
local located = {}
local function locate(incident)
  if located[incident] ~= nil then return located[incident] end
  local where, searched = redis.call('HGET', index, incident), false
  local score = where and redis.call('ZSCORE', remembered(where), incident)
  if where and not score then  -- a stale entry: a previous release forgot or moved it
    redis.call('HDEL', index, incident)
    where = false
  end
  if not where and redis.call('HEXISTS', owners, incident) == 1 then
    where, searched = search(incident), true
    score = where and redis.call('ZSCORE', remembered(where), incident)
  end
  local found = false
  if where then
    local set = remembered(where)
    if tonumber(score) < idle_before then  -- idle: forgotten here, unknown now
      redis.call('ZREM', set, incident)
      redis.call('HDEL', owners, incident)
      redis.call('HDEL', index, incident)
    elseif slot(where) then
      found = {where, redis.call('HGET', owners, incident) or '', not searched}
    end
  end
  located[incident] = found
  return found
end
local function disown(incidents)  -- forget the owners and index entries of these
  for from = 1, #incidents, 1000 do
    local slice = {unpack(incidents, from, math.min(from + 999, #incidents))}
    redis.call('HDEL', owners, unpack(slice))
    redis.call('HDEL', index, unpack(slice))
  end
end
-- what each touched queue holds (events counted once a request goes there; bytes)
local length, bytes = {}, {}
local function load(kid)
  if length[kid] == nil then
    local stats = redis.call('HMGET', per_key(prefix, 'stats', kid), 'bytes', 'laned')
    bytes[kid] = tonumber(stats[1] or '0')
    length[kid] = redis.call('LLEN', per_key(prefix, 'queue', kid)) + tonumber(stats[2] or '0')
  end
end
-- seen[incident]: the key it is remembered on after this call (HELD: held), or false
-- once resolved; forgot[incident]: the keys whose sets must drop it (a resolve each:
-- a later one of the call may name another key); drops: {set,
-- incident}; owner[incident]: who opened it ('' none known); claimed[incident]: opened
-- in this call; order: the keys given events, in the order they were first given one
local chosen, queued, grew, seen, forgot, drops, notices = {}, {}, {}, {}, {}, {}, {}
local stories, owner, claimed, order = {}, {}, {}, {}
local at, grown = 12, 0
for size in string.gmatch(ARGV[5], '%d+') do
  -- one request, tried on its own copy of what the call decided so far
  local rseen = setmetatable({}, {__index = seen})
  local rowner = setmetatable({}, {__index = owner})
  local rforgot, rqueued, radded, rchosen, rdrops, rnotices = {}, {}, {}, {}, {}, {}
  local rstories, rclaimed, rorder, owned = {}, {}, {}, nil
  for position = 1, tonumber(size) do
    local given, incident, action = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2]
    local sender, anyone = ARGV[at + 6], false
    if string.sub(sender, 1, 1) == '*' then sender, anyone = string.sub(sender, 2), true end
    local named = given < 0  -- the event named its key: it goes there, and so does its incident
    local kid = given == 0 and HELD or ARGV[at + 7]
    slot_of[kid] = math.abs(given)
    if incident ~= '' then
      local known = rseen[incident]  -- in this call: its key, false once resolved, or nil
      local where = known  -- where the incident is open (HELD: held), if it is
      if known == nil and action ~= 'fresh' then
        local found = locate(incident)
        if found then
          where = found[1]
          if rowner[incident] == nil then rowner[incident] = found[2] end
        end
      end
      local by = where and rowner[incident]
      if by and by ~= '' and by ~= 'a' and by ~= sender and not anyone then
        owned = owned or ('owner:' .. position .. ':' .. by)  -- another sender's incident
      end
      if named then
        if where and where ~= kid then table.insert(rdrops, {remembered(where), incident}) end
      elseif known then
        kid = known
      elseif where == HELD then
        if action == 'trigger' and kid ~= HELD then
          table.insert(rdrops, {held, incident})  -- held before, sent now
        else
          kid = HELD
        end
      elseif where then
        kid = where
      end
      if action == 'resolve' then
        rseen[incident], rowner[incident] = false, ''
        rforgot[incident] = rforgot[incident] or {}
        rforgot[incident][kid] = true
      elseif action == 'trigger' or action == 'fresh' then
        if kid ~= HELD or action ~= 'fresh' then  -- a minted dedup_key held: not remembered
          rseen[incident] = kid
          if (rowner[incident] or '') == '' then
            rowner[incident], rclaimed[incident] = sender, true
          end
        end
      elseif where then  -- an acknowledge remembers only an open incident: one of an
        rseen[incident] = kid  -- unknown would choose where its trigger goes, and whose
      end
    end
    if kid ~= HELD then
      if not rqueued[kid] then rqueued[kid], radded[kid] = {}, 0; rorder[#rorder + 1] = kid end
      table.insert(rqueued[kid], ARGV[at + 3])
      radded[kid] = radded[kid] + #ARGV[at + 3]
    end
    local went = slot(kid)
    rchosen[#rchosen + 1] = went
    if ARGV[at + 4] ~= '' then
      rnotices[#rnotices + 1] = went .. '\\n' .. ARGV[at + 4] .. '\\n' .. ARGV[at + 3]
    end
    if ARGV[at + 5] ~= '' then rstories[#rstories + 1] = went .. '\\31' .. ARGV[at + 5] end
    at = at + 8
  end
  local refused, added = owned, 0
  if not owned then
    for _, kid in ipairs(rorder) do
      load(kid)
      if length[kid] + #rqueued[kid] > most_events or bytes[kid] + radded[kid] > most_bytes then
        refused = 'full:' .. slot(kid)
        break
      end
      added = added + radded[kid]
      refused = refused or (total + added > most_total and 'total:' .. slot(kid)) or nil
    end
  end
  if refused then
    for _ = 1, #rchosen do chosen[#chosen + 1] = refused end
  else
    for incident, kid in pairs(rseen) do seen[incident] = kid end
    for incident, kids in pairs(rforgot) do
      forgot[incident] = forgot[incident] or {}
      for kid in pairs(kids) do forgot[incident][kid] = true end
    end
    for incident, by in pairs(rowner) do owner[incident] = by end
    for incident in pairs(rclaimed) do claimed[incident] = true end
    for _, drop in ipairs(rdrops) do drops[#drops + 1] = drop end
    for _, kid in ipairs(rorder) do
      if not queued[kid] then queued[kid], grew[kid] = {}, 0; order[#order + 1] = kid end
      for _, raw in ipairs(rqueued[kid]) do table.insert(queued[kid], raw) end
      length[kid] = length[kid] + #rqueued[kid]
      bytes[kid] = bytes[kid] + radded[kid]
      grew[kid] = grew[kid] + radded[kid]
    end
    total = total + added
    grown = grown + added
    for _, went in ipairs(rchosen) do chosen[#chosen + 1] = went end
    for _, notice in ipairs(rnotices) do notices[#notices + 1] = notice end
    for _, story in ipairs(rstories) do stories[#stories + 1] = story end
  end
end
for _, drop in ipairs(drops) do redis.call('ZREM', drop[1], drop[2]) end
local remember, placed = {}, {}
for incident, kid in pairs(seen) do
  if kid then
    remember[kid] = remember[kid] or {}
    table.insert(remember[kid], now)
    table.insert(remember[kid], incident)
    local was = located[incident]
    if not (was and was[3] and was[1] == kid) then  -- (unless indexed there already)
      placed[#placed + 1] = incident
      placed[#placed + 1] = kid
    end
  end
end
local gone, opened = {}, {}
for incident, kids in pairs(forgot) do
  for kid in pairs(kids) do
    if seen[incident] ~= kid then redis.call('ZREM', remembered(kid), incident) end
  end
  if seen[incident] == false then gone[#gone + 1] = incident end
end
disown(gone)
for incident in pairs(claimed) do
  if seen[incident] then
    opened[#opened + 1] = incident
    opened[#opened + 1] = owner[incident]
  end
end
for from = 1, #opened, 1000 do
  redis.call('HSET', owners, unpack(opened, from, math.min(from + 999, #opened)))
end
for from = 1, #placed, 1000 do
  redis.call('HSET', index, unpack(placed, from, math.min(from + 999, #placed)))
end
for kid, pairs_ in pairs(remember) do
  local set, added = remembered(kid), 0
  for from = 1, #pairs_, 1000 do
    added = added + redis.call('ZADD', set, unpack(pairs_, from, math.min(from + 999, #pairs_)))
  end
  if added > 0 then  -- the set grew: past the cap, at most 1,000 forgotten a call
    local over = redis.call('ZCARD', set) - tonumber(ARGV[9])
    local gone = forget_oldest(set, kid, owners, index, math.min(over, 1000))
    if gone > 0 then redis.call('HINCRBY', shed, kid ~= HELD and 'incidents' or 'held', gone) end
  end
end
for _, kid in ipairs(order) do
  local raws, stats = queued[kid], per_key(prefix, 'stats', kid)
  for from = 1, #raws, 1000 do
    redis.call('RPUSH', per_key(prefix, 'queue', kid),
               unpack(raws, from, math.min(from + 999, #raws)))
  end
  redis.call('HINCRBY', stats, 'accepted', #raws)
  redis.call('HINCRBY', stats, 'bytes', grew[kid])
  redis.call('PUBLISH', ARGV[11], kid)
end
if grown > 0 then redis.call('INCRBY', queued_bytes, grown) end
if #notices > 0 then
  local room = tonumber(ARGV[6]) - tonumber(redis.call('HGET', told, 'bytes') or '0')
  local kept, size, skipped = {}, 0, 0
  for _, notice in ipairs(notices) do
    if size + #notice <= room then
      kept[#kept + 1] = notice
      size = size + #notice
    else
      skipped = skipped + 1
    end
  end
  for from = 1, #kept, 1000 do
    redis.call('RPUSH', outbox, unpack(kept, from, math.min(from + 999, #kept)))
  end
  if size > 0 then redis.call('HINCRBY', told, 'bytes', size) end
  if skipped > 0 then redis.call('HINCRBY', told, 'skipped', skipped) end
end
if #stories > 0 then
  local v = table.concat(stories, '\\30')
  local id = redis.call('XADD', history, '*', 's', 'accepted', 'v', v)
  keep_count(history, tonumber(ARGV[7]))  -- counting what the export lost (relay.history.loss)
  keep_within(history, ledger, id, #v, tonumber(ARGV[8]))
end
return chosen
"""
