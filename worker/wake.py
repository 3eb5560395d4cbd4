"""The wake channel's listener of a worker process serving many keys (``worker.fleet``):
ENQUEUE publishes on ``Names.wake`` the id of each key it gave events, and the listener
wakes that key's loop at once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis

from relay.sentinel import moved
from worker.delivery import REDIS_RETRY_S

if TYPE_CHECKING:
    from worker.fleet import Fleet

log = logging.getLogger(__name__)

LISTEN_POLL_S = 5.0  # the listener's read timeout: it sees this often whether to stop


def listen(fleet: Fleet) -> None:
    """Wake the keys named on ``Names.wake``; after a (re)subscription, every key
    (what was published meanwhile is lost). Under Sentinel, once a read times out with
    nothing heard, it checks the subscription is still on the primary (a failover with
    the old primary alive leaves it on a replica, which hears nothing published on the
    new one while it resyncs) and subscribes again there if not."""
    while not fleet.stopping.is_set():
        try:
            pubsub = fleet.client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(fleet.names.wake)
            fleet.wake_all()
            while not fleet.stopping.is_set():
                message = pubsub.get_message(timeout=LISTEN_POLL_S)
                if message and message.get("type") == "message":
                    fleet.wake(str(message["data"]))
                elif message is None and moved(fleet.client, pubsub.connection):
                    log.warning("the Redis primary moved: listening for arrivals on the "
                                "new one")
                    pubsub.close()
                    break
        except (redis.RedisError, OSError) as exc:
            log.warning("listening for arrivals failed: %s; the tick finds them meanwhile",
                        exc)
            fleet.stopping.wait(REDIS_RETRY_S)
