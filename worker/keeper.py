"""The leases of many keys kept by one process, in one script call per slice of keys.

Each tick a worker process serving many keys (``worker.fleet``) records itself alive on
every key (the key's ``workers`` set, as a single-key worker's heartbeat does), keeps the
leases it holds, takes the free ones it wants, and learns which of its keys have events
waiting: one KEEP call per ``SLICE`` keys, all in one round trip. What a tick costs in
Redis and in Python grows with the keys, but nothing else runs while a key is idle: no
thread per key beating, no blocked connection per key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from relay.names import Names
from relay.scripts import Scripts
from worker.lease import STALE_WORKER_MS
from worker.served import parse_share

SLICE = 100  # keys per KEEP call: ~0.5 ms of Redis time each, so no call holds it long
NAMES_PER_KEY = 5

# For each key (5 KEYS each: lease, workers set, arrival list, in-flight list, stats):
# record the worker alive until ARGV[2], forgetting workers silent since ARGV[3]; keep the
# lease if ours, take it if free and the key's character of ARGV[5] is '1'; and say
# whether events wait.
# Its first write (ZREMRANGEBYSCORE) frees memory, so it runs when Redis is full.
# ARGV[1] worker id, ARGV[2] alive until (ms), ARGV[3] stale before (ms), ARGV[4] TTL (ms),
# ARGV[5] a character per key: '1' take the lease if free, '0' only keep it
# Returns per key 2 * state + waiting: state 0 another's lease, 1 free, 2 ours; waiting 1
# when the lease is ours and an event is in flight, arrived, or sorted into a lane.
KEEP = """
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local lease, workers = KEYS[i * 5 + 1], KEYS[i * 5 + 2]
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', ARGV[3])
  redis.call('ZADD', workers, ARGV[2], ARGV[1])
  local holder = redis.call('GET', lease)
  local state = 0
  if holder == ARGV[1] then
    redis.call('PEXPIRE', lease, ARGV[4])
    state = 2
  elseif not holder then
    state = 1
    if string.byte(ARGV[5], i + 1) == 49 then  -- '1'
      redis.call('SET', lease, ARGV[1], 'PX', ARGV[4])
      state = 2
    end
  end
  local waiting = 0
  if state == 2 and (redis.call('LLEN', KEYS[i * 5 + 3]) > 0
      or redis.call('LLEN', KEYS[i * 5 + 4]) > 0
      or tonumber(redis.call('HGET', KEYS[i * 5 + 5], 'laned') or '0') > 0) then
    waiting = 1
  end
  out[#out + 1] = state * 2 + waiting
end
return out
"""

ANOTHERS, FREE, OURS = 0, 1, 2


@dataclass(frozen=True)
class Found:
    """What a tick found of one key's lease."""

    state: int  # ANOTHERS, FREE or OURS
    waiting: bool  # (only known when OURS)


class Keeper:
    def __init__(self, client: redis.Redis, names: Names, worker_id: str, ttl_s: float,
                 wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.names = names
        self.worker_id = worker_id
        self.ttl_ms = int(ttl_s * 1000)
        self.wall = wall
        self.script: Any = client.register_script(KEEP)
        self.scripts = Scripts(client)

    def keys_of(self, kid: str) -> list[str]:
        names = self.names
        return [names.lease(kid), names.workers(kid), names.queue(kid), names.inflight(kid),
                names.stats(kid)]

    def keep(self, kids: Sequence[str], take: Sequence[bool],
             share: tuple[int, int] | None = None) -> list[Found]:
        """One tick over ``kids``: what each lease is now (see KEEP), in one round trip;
        and this process's ``share`` said for as long as it is recorded alive."""
        now = int(self.wall() * 1000)
        head = [self.worker_id, now + self.ttl_ms, now - STALE_WORKER_MS, self.ttl_ms]
        with self.client.pipeline(transaction=False) as pipe:
            if share is not None:
                pipe.set(self.names.worker_share(self.worker_id), f"{share[0]}/{share[1]}",
                         px=self.ttl_ms)
            for start in range(0, len(kids), SLICE):
                part = kids[start:start + SLICE]
                self.script(keys=[n for kid in part for n in self.keys_of(kid)],
                            args=[*head, "".join("1" if t else "0"
                                                 for t in take[start:start + SLICE])],
                            client=pipe)
            replies = pipe.execute()[1 if share is not None else 0:]
        return [Found(int(code) // 2, bool(int(code) % 2)) for reply in replies
                for code in reply]

    def shares_alive(self, kids: Sequence[str], within_s: float) -> list[list[tuple[int, int]]]:
        """For each key, the shares said by the other processes that recorded themselves
        alive on it in the last ``within_s`` (a process killed or frozen stops ticking:
        its keys are not given back to it); two round trips: who, then what they said."""
        since = int(self.wall() * 1000) + self.ttl_ms - int(within_s * 1000)
        with self.client.pipeline(transaction=False) as pipe:
            for kid in kids:
                pipe.zrangebyscore(self.names.workers(kid), since, "+inf")
            alive = [[str(w) for w in found if str(w) != self.worker_id]
                     for found in pipe.execute()]
        others = sorted({w for found in alive for w in found})
        said = dict(zip(others, self.client.mget([self.names.worker_share(w)
                                                  for w in others]) if others else [],
                        strict=True))
        return [[share for w in found if (share := parse_share(said[w])) is not None]
                for found in alive]

    def give_back(self, kid: str) -> None:
        """Drop this key's lease (where ours), staying recorded alive on it: a standby."""
        self.scripts.lease_renew(keys=[self.names.lease(kid)], args=[self.worker_id, 0])

    def release(self, kids: Sequence[str]) -> None:
        """Give up these keys' leases (where ours) and leave their workers sets."""
        with self.client.pipeline(transaction=False) as pipe:
            for kid in kids:
                self.scripts.lease_renew(keys=[self.names.lease(kid)],
                                         args=[self.worker_id, 0], client=pipe)
                pipe.zrem(self.names.workers(kid), self.worker_id)
            pipe.execute()
