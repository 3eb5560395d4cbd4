"""Retention: what the relay keeps per event is swept, so Redis's memory stays flat.

- dead letters older than ``RELAY_DEAD_LETTER_DAYS`` (purged by the dead-letter store,
  so the key's counts stay right);
- incidents remembered on a key, and held incidents, silent for ``RELAY_INCIDENT_TTL_S``,
  with their owners and index entries, in slices of 1,000 (ENQUEUE forgets only an idle
  incident it looks up: issue 26);
- RQ's registries of the channel queues (finished, failed and abandoned jobs past their
  TTLs: RQ sweeps them only when asked);
- story steps older than ``RELAY_HISTORY_DAYS`` (the stream is also capped by count).

It also sets the total of the queues' bytes to the keys' sum (``relay.indexing.recount``)
and drops index entries of incidents no set remembers (``relay.indexing.sweep``): a
previous release's processes, during a rolling upgrade, change the keys' bytes alone and
forget incidents without their index entries.

Everything else per event expires by itself: probe outcomes (an hour), the channels'
incident memories (with the incident; at most ``HEARD_MAX``, relay.channels.outbox),
RQ's results (an hour) and failed jobs (as long as dead letters).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from rq import Queue
from rq.registry import clean_registries

from relay import indexing
from relay.deadletters import DeadLetters
from relay.history import History
from relay.keys import key_id
from relay.names import HELD, Names
from relay.scripts import Scripts
from relay.settings import Settings

log = logging.getLogger(__name__)


def sweep(client: redis.Redis, names: Names, settings: Settings, now_ms: int,
          queues: Sequence[Queue] = ()) -> dict[str, int]:
    """Sweep once; return how much of each kind went."""
    cutoff = now_ms - int(settings.dead_letter_days * 86_400_000)
    store = DeadLetters(client, names, settings.routing_keys)
    letters = sum(store.purge(str(dead_id)) == "purged"
                  for dead_id in client.zrangebyscore(names.dead_index, "-inf", cutoff))
    idle = now_ms - int(settings.incident_ttl_s * 1000)
    scripts = Scripts(client)
    incidents = sum(scripts.forget_incidents(names, where, idle) for where in (
        *(key_id(key) for key in settings.routing_keys), HELD))
    indexing.recount(client, names)  # what corrects the total's drift, if any
    unindexed = indexing.sweep(client, names)  # what a previous release forgot
    if unindexed:
        log.info("retention: %d index entries of incidents forgotten without it dropped",
                 unindexed)
    for queue in queues:
        clean_registries(queue)
    history = History(client, names, settings)
    steps = history.trim(now_ms - int(settings.history_days * 86_400_000))
    found = {"dead_letters": letters, "incidents": incidents, "story_steps": steps}
    if letters or incidents:
        log.info("retention: %d dead letter(s) older than %g days and %d idle incident(s) "
                 "forgotten", letters, settings.dead_letter_days, incidents)
    return found
