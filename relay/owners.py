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


# Forget incidents of a remembered set (a key's, or the held ones) with their owners:
# forget_idle(set, owners, before, most): at most ``most`` last seen before ``before``
# (ms, or '+inf'); forget_oldest(set, owners, count): the ``count`` longest silent.
# Each returns how many went; each frees memory first (ZREM, ZPOPMIN), so a script may
# call them first when Redis is full. Needs nothing else.
FORGETTING = """
local function forget_idle(set, owners, before, most)
  local idle = redis.call('ZRANGEBYSCORE', set, '-inf', before, 'LIMIT', 0, most)
  if #idle == 0 then return 0 end
  redis.call('ZREM', set, unpack(idle))
  redis.call('HDEL', owners, unpack(idle))
  return #idle
end
local function forget_oldest(set, owners, count)
  if count <= 0 then return 0 end
  local popped, members = redis.call('ZPOPMIN', set, count), {}
  for i = 1, #popped, 2 do members[#members + 1] = popped[i] end
  if #members > 0 then redis.call('HDEL', owners, unpack(members)) end
  return #members
end
"""
