"""The version of what the relay stores in Redis (promise 9: a release reads what the
previous one stored, or refuses to start and says why).

Every process that touches the queues checks it at start (``relay.cli`` before each
command that reaches Redis, and ``relay.app.create_app``): one string under the prefix
(``Names.format``), the version of the stored formats (events, lanes, pending, incidents,
owners, held, outbox, history: docs/DESIGN.md, "Stored formats and upgrades").

- ``FORMAT``: what this release writes; ``READS``: the oldest it reads. A process whose
  store holds a version above ``FORMAT`` (a newer release wrote it) or below ``READS``
  refuses to start, naming both (``StoreFormatError``, exit status 2).
- A store without the key is version 1 (v0.1.0 stored no version), or fresh when no
  process of any release has started on it (``Names.known_keys`` is absent).
- A store at an older version this release reads is upgraded by the first process that
  starts (``RAISE``: atomic, never lowers): each step's migration runs in the same call.
- ``pd-relay format --rollback-to 1``, run just before a rollback to v0.1.0, marks the
  store as version 1 again (``LOWER``), so that the next upgrade repeats its migration.

Version 2 (v0.2.0) reads and writes the same events, lanes, pending notes and
incidents as version 1; it adds incidents' owners (``Names.owners``), which version 1
neither keeps nor forgets. Upgrading from 1 forgets every owner: owners written before
the rollback that the version 1 processes forgot or reopened meanwhile would refuse a
follow-up with 403 (an incident without an owner is anyone's until its next trigger).

Version 3 (issue 26) adds the index of remembered incidents (``Names.where``: which
key's set remembers each) and the total of the queues' bytes (``Names.queued_bytes``),
so that ENQUEUE's work grows with its events, not with the keys. Upgrading from 1 or 2
builds both from the sets and the keys' counts, in slices (``relay.indexing``): every
process of this release that starts meanwhile builds with the others, and none goes on
before the last slice sets version 3. A rollback leaves them stale: the next upgrade
builds them again. Version 2's processes still running during a rolling upgrade keep
neither: ENQUEUE finds their owned incidents by looking on every key once, and the
retention sweep (and each start) recounts the total.

Short-lived records that expire on their own carry their own version instead, and are
not counted here: an older release ignores them, and a record of a version this release
does not read counts as absent. The dashboard's sessions (``relay.ui.sessions``,
``Names.ui_session``: ``{"v": 1, ...}``) are such: after a rollback or an upgrade across
their version, operators sign in again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from relay import indexing
from relay.errors import StoreFormatError
from relay.names import Names
from relay.settings import Settings
from relay.store import connect, is_full, unless_redis_down

log = logging.getLogger(__name__)

FORMAT = 3  # what this release writes
READS = 1  # the oldest it reads, and upgrades from
RELEASES = {1: "v0.1.0", 2: "v0.2.0", 3: "v0.3.0"}  # the release that introduced each

# Upgrade the stored version to this release's, atomically: never lowered, and each step's
# migration with it. Its first write (UNLINK: freed in the background, however big)
# frees memory, so it runs when Redis is full.
# KEYS[1] the version, KEYS[2] the incidents' owners hash, KEYS[3] the keys the relay
# served (any release's process writes it at start: its absence means a fresh store)
# ARGV[1] this release's version, ARGV[2] the oldest it reads
# Returns {the version found (0: a fresh store), what was done: 'current', 'fresh',
# 'building' (version 2 reached; the caller builds version 3's index: relay.indexing),
# or 'newer' / 'older' (nothing done: the caller refuses to start)}.
RAISE = """
local wanted, oldest = tonumber(ARGV[1]), tonumber(ARGV[2])
local found = tonumber(redis.call('GET', KEYS[1]) or '0')
if found == 0 and redis.call('EXISTS', KEYS[3]) == 1 then found = 1 end
if found == wanted then return {found, 'current'} end
if found > wanted then return {found, 'newer'} end
if found ~= 0 and found < oldest then return {found, 'older'} end
if found == 0 then
  redis.call('SET', KEYS[1], wanted)
  return {found, 'fresh'}
end
if found < 2 then
  redis.call('UNLINK', KEYS[2])  -- 1 -> 2: owners a version 1 process may have left stale
  redis.call('SET', KEYS[1], 2)
end
return {found, 'building'}  -- 2 -> 3: the index and the total, in slices
"""

# Mark the store as an older version (a rollback), unless a newer release wrote it. Its
# first write (HDEL) is one Redis never refuses, so it runs when Redis is full.
# KEYS[1] the version, KEYS[2] the keys the relay served, KEYS[3] the progress of a
# build of version 3 (dropped: the next upgrade builds again from the start)
# ARGV[1] the version to mark, ARGV[2] this release's
# Returns the version found (0: none), and leaves a higher one than ARGV[2] as it was.
LOWER = """
redis.call('HDEL', KEYS[2], '#never')  -- a first write Redis never refuses (when full)
local found = tonumber(redis.call('GET', KEYS[1]) or '0')
if found == 0 and redis.call('EXISTS', KEYS[2]) == 1 then found = 1 end
if found <= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
end
return found
"""


@dataclass(frozen=True)
class Found:
    """What a start found: the stored version (0: a fresh store) and what was done."""

    version: int
    outcome: str  # current, fresh, upgraded (or, read only: readable)


def named(version: int) -> str:
    release = RELEASES.get(version)
    return f"{version} ({release})" if release else str(version)


def refusal(found: int) -> StoreFormatError:
    if found > FORMAT:
        return StoreFormatError(
            f"Redis holds stored formats version {named(found)}, newer than this release "
            f"reads (version {FORMAT}): run the release that wrote them (or a newer one); "
            "to roll back, see README, \"Upgrading\"")
    return StoreFormatError(
        f"Redis holds stored formats version {named(found)}, older than this release reads "
        f"(versions {READS} to {FORMAT}): upgrade through the releases between first "
        "(README, \"Upgrading\")")


def unfinished(exc: redis.RedisError) -> StoreFormatError:
    """What a process says when the build of version 3 stopped part way (the next start
    of a process of this release goes on with it): it does not start on half an index."""
    why = "Redis is full: make room first (README, \"Memory: bounded, pages first\")" if isinstance(
        exc, redis.exceptions.ResponseError) and is_full(exc) else type(exc).__name__
    return StoreFormatError(
        f"the upgrade of the stored formats to version {FORMAT} stopped part way ({why}); "
        "a process of this release goes on with it when it starts again")


def stored(client: redis.Redis, names: Names) -> int:
    """The stored version: 0 for a fresh store, 1 for one without the key."""
    found = client.get(names.format)
    if found is not None:
        return int(found)
    return 1 if client.exists(names.known_keys) else 0


def ensure(client: redis.Redis, names: Names, upgrade: bool = True) -> Found:
    """Check the stored version at start, and (``upgrade``) raise an older one to this
    release's; ``StoreFormatError`` when this release cannot read it."""
    if not upgrade:
        version = stored(client, names)
        if version > FORMAT or 0 < version < READS:
            raise refusal(version)
        return Found(version, "current" if version == FORMAT else "readable")
    script: Any = client.register_script(RAISE)
    version, outcome = script(keys=[names.format, names.owners, names.known_keys],
                              args=[FORMAT, READS])
    version, outcome = int(version), str(outcome)
    if outcome in ("newer", "older"):
        raise refusal(version)
    if outcome == "building":
        log.warning("stored formats: upgrading from version %s to %s (indexing the "
                    "remembered incidents, in slices)", named(version), FORMAT)
        try:
            indexed = indexing.build(client, names, FORMAT)
        except redis.RedisError as exc:  # none goes on before the index is whole
            raise unfinished(exc) from exc
        log.warning("stored formats upgraded from version %s to %s (%d incident(s) indexed "
                    "by this process)", named(version), FORMAT, indexed)
        return Found(version, "upgraded")
    indexing.recount(client, names)  # what a previous release's processes left uncounted
    return Found(version, outcome)


def at_start(settings: Settings, upgrade: bool = True,
             redis_down: int = logging.WARNING) -> Found | None:
    """``ensure`` on the settings' Redis. Redis unreachable: a line at ``redis_down``'s
    level and None (0: raise), as for the keys' check (relay.startup): a process may start
    before Redis, and checks again at its next start."""
    return unless_redis_down(lambda: ensure(connect(settings), Names(settings.prefix), upgrade),
                             "the stored formats' version is", redis_down)


def rollback(client: redis.Redis, names: Names, version: int) -> int:
    """Mark the store as ``version`` (older than this release's); return the version found.
    ``StoreFormatError`` when a newer release wrote it, or ``version`` is not one this
    release knows how to hand back to."""
    if not READS <= version < FORMAT:
        raise StoreFormatError(f"cannot roll back to stored formats version {version}: "
                               f"this release hands back versions {READS} to {FORMAT - 1}")
    script: Any = client.register_script(LOWER)
    found = int(script(keys=[names.format, names.known_keys, names.upgrading],
                       args=[version, FORMAT]))
    if found > FORMAT:
        raise refusal(found)
    return found
