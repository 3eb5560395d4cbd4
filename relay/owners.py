"""Who owns an incident (promise 7; docs/DESIGN.md, "Incidents have an owner"): the names
ENQUEUE keeps in ``Names.owners``, its answer when an event acts on another sender's
incident, and the Lua every script shares to forget incidents with their owners.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.keys import key_id

ANYONE = "a"  # the owner of an incident an anonymous sender opened: anyone may act on it
RELAY = "relay"  # the owner of the relay's own alarms


def owner_of(source: str | None, routing_key: str | None, follow_up_any: bool = False) -> str:
    """Who sends an event, as the incidents' owners hash names them (ENQUEUE): a source
    (by name), else the routing key it names (by its id), else anyone. ``follow_up_any``:
    a source that may act on any sender's incidents (``follow_up: any``)."""
    if source is not None:
        return ("*" if follow_up_any else "") + "s:" + source
    if routing_key is not None:
        return "k:" + key_id(routing_key)
    return ANYONE


@dataclass(frozen=True)
class Owned:
    """What a request's events are told when one of them (``position``, from 1) acts on an
    incident another sender opened (``owner``, for the log only): nothing of it was
    stored."""

    position: int
    owner: str = ""


# Forget incidents of a remembered set (a key's, or the held ones) with their owners and
# their entries in the index (``Names.where``), each of which ``where`` names (a key id,
# or '-' for the held set): forget_idle(set, where, owners, index, before, most): at most
# ``most`` last seen before ``before`` (ms, or '+inf'); forget_oldest(set, where, owners,
# index, count): the ``count`` longest silent. An incident the index places on another
# set is only taken out of this one (a copy a previous release left: its owner stays).
# Each returns how many went; each frees memory first (ZREM, ZPOPMIN), so a script may
# call them first when Redis is full. Needs nothing else.
FORGETTING = """
local function unindex(where, owners, index, members)
  local gone = {}
  for _, member in ipairs(members) do
    local at = redis.call('HGET', index, member)
    if not at or at == where then gone[#gone + 1] = member end
  end
  if #gone > 0 then
    redis.call('HDEL', owners, unpack(gone))
    redis.call('HDEL', index, unpack(gone))
  end
end
local function forget_idle(set, where, owners, index, before, most)
  local idle = redis.call('ZRANGEBYSCORE', set, '-inf', before, 'LIMIT', 0, most)
  if #idle == 0 then return 0 end
  redis.call('ZREM', set, unpack(idle))
  unindex(where, owners, index, idle)
  return #idle
end
local function forget_oldest(set, where, owners, index, count)
  if count <= 0 then return 0 end
  local popped, members = redis.call('ZPOPMIN', set, count), {}
  for i = 1, #popped, 2 do members[#members + 1] = popped[i] end
  if #members > 0 then unindex(where, owners, index, members) end
  return #members
end
"""
