"""Room for pages when Redis is full (promise 8): what the relay lets go first.

Everything the relay keeps per event or incident has a cap of its own, and the stack's
``maxmemory`` leaves room for them all (``relay.memory.least_redis_mb``). A Redis full all
the same (a ``maxmemory`` set below that, fragmentation, another tenant, RQ's jobs)
refuses ENQUEUE, and pages would wait until the workers drained enough. So an ingress
refused for want of memory first sheds what matters less than a page, and tries once
more (``relay.store.EventStore``):

- the older half of the history, at most ``HISTORY_AT_ONCE`` entries;
- the oldest held incidents (a follow-up of one then goes out: harmless to PagerDuty);
- the oldest channel notices not yet made jobs (counted as skipped, as when the outbox
  is full).

Each is counted in ``Names.shed`` (status and ``/metrics`` show it).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from relay.history.loss import LOSS
from relay.names import HELD, Names
from relay.owners import FORGETTING

log = logging.getLogger(__name__)

HISTORY_AT_ONCE = 50_000  # history entries shed at most per call
OTHERS_AT_ONCE = 1_000  # held incidents, and channel notices, shed at most per call

# Shed what matters less than a page. Its first write (XTRIM) frees memory, so Redis
# runs it when full, and then the rest (docs/DESIGN.md, "A full Redis").
# KEYS[1] history stream, KEYS[2] held incidents, KEYS[3] outbox, KEYS[4] the channels'
# stats hash {bytes, skipped}, KEYS[5] the shed hash, KEYS[6] the incidents' owners,
# KEYS[7] their index
# ARGV[1] most history entries to drop, ARGV[2] most held incidents and notices to drop
# Returns {history entries, held incidents, notices} dropped.
# With the export group (relay.history.loss), the entries it was delivered go first; the
# others shed are counted lost from the record.
SHED = FORGETTING + LOSS + """
local function shed_history(stream, keep)
  local delivered = export_delivered(stream)
  if not delivered then return redis.call('XTRIM', stream, 'MAXLEN', '~', keep) end
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first == 0 then return 0 end
  local after = id_after(delivered)
  if id_less(first[1][1], after) then
    local most = math.max(redis.call('XLEN', stream) - keep, 1)
    local gone = redis.call('XTRIM', stream, 'MINID', '~', after, 'LIMIT', most)
    if gone > 0 then return gone end
    return redis.call('XTRIM', stream, 'MINID', after)  -- fewer than a stream node's
  end
  local lost = redis.call('XTRIM', stream, 'MAXLEN', '~', keep)
  count_lost(stream, lost)
  return lost
end
local length = redis.call('XLEN', KEYS[1])
local keep = math.max(length - tonumber(ARGV[1]), math.floor(length / 2))
local history = shed_history(KEYS[1], keep)
local held = forget_oldest(KEYS[2], '""" + HELD + """', KEYS[6], KEYS[7], tonumber(ARGV[2]))
local notices = redis.call('LPOP', KEYS[3], tonumber(ARGV[2])) or {}
local size = 0
for _, notice in ipairs(notices) do size = size + #notice end
if size > 0 then
  redis.call('HINCRBY', KEYS[4], 'bytes', -size)
  redis.call('HINCRBY', KEYS[4], 'skipped', #notices)
end
for field, count in pairs({history = history, held = held, notices = #notices}) do
  if count > 0 then redis.call('HINCRBY', KEYS[5], field, count) end
end
return {history, held, #notices}
"""


class Shed:
    def __init__(self, client: redis.Redis, names: Names) -> None:
        self.script: Any = client.register_script(SHED)
        self.keys = [names.history, names.held, names.outbox, names.channel_stats, names.shed,
                     names.owners, names.where]

    def make_room(self) -> bool:
        """Shed once; whether anything went (if not, the page must wait: a 503)."""
        history, held, notices = (int(n) for n in self.script(
            keys=self.keys, args=[HISTORY_AT_ONCE, OTHERS_AT_ONCE]))
        if history or held or notices:
            log.warning("Redis is full: shed %d history entries, %d held incidents and %d "
                        "channel notices to store events", history, held, notices)
        return bool(history or held or notices)
