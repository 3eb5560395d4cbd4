"""Rate limiting per routing key: a sliding 60-second window kept in Redis.

It mirrors PagerDuty's own count (requests in the window looking back from now), and
holds for any number of workers and across restarts: the window lives in Redis and is
timed by Redis's clock. Every attempt takes a slot, retries included.

The window is kept a little longer than PagerDuty's (``guard_ms``: 1%, at least 100 ms),
so that a send whose slot was taken early but that arrived late still leaves room:
what PagerDuty sees is spread by network jitter, not only by our clock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, script: Any, window_key: str, limit: int, window_s: float) -> None:
        self.script = script
        self.window_key = window_key
        self.limit = limit
        self.window_ms = int(window_s * 1000) + guard_ms(window_s)

    def try_acquire(self) -> float:
        """Take a slot now and return 0, or return the seconds to wait for one."""
        wait_ms = self.script(
            keys=[self.window_key], args=[self.limit, self.window_ms, uuid.uuid4().hex]
        )
        return int(wait_ms) / 1000

    def acquire(self, sleep: Callable[[float], None]) -> None:
        """Block (through ``sleep``) until a slot is taken."""
        while (wait := self.try_acquire()) > 0:
            log.debug("rate limit reached, waiting %.2fs", wait)
            sleep(wait)


def guard_ms(window_s: float) -> int:
    return max(100, int(window_s * 10))
