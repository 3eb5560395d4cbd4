"""Rate limiting per routing key: a sliding 60-second window kept in Redis.

It mirrors PagerDuty's own count (requests in the window looking back from now), and
holds for any number of workers and across restarts: the window lives in Redis and is
timed by Redis's clock. Every attempt takes a slot, retries included.

The window is kept a little longer than PagerDuty's (``Settings.rate_window_ms``: 1%, at
least 100 ms), so that a send whose slot was taken early but that arrived late still
leaves room: what PagerDuty sees is spread by network jitter, not only by our clock.

In storm mode the events below critical are paced (``burst``): spread over the window
rather than sent in a burst, so that a critical event never finds the window spent by
lesser ones and waits for it to pass (docs/DESIGN.md, "Storm mode").

PagerDuty may throttle a key below its usual limit (dynamic throttling). A 429 cuts the
key's limit to 3/4 of what PagerDuty took in the last window (not below a tenth of the
configured limit, at most once per window); it then climbs back by a tenth of the
configured limit per window (AIMD, as TCP does). So the relay settles just under what
PagerDuty takes instead of spending a slot on a 429 again and again. The scripts are in
relay/scripts.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from relay.scripts import Scripts

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(
        self, scripts: Scripts, window_key: str, throttle_key: str, limit: int, window_ms: int
    ) -> None:
        self.scripts = scripts
        self.keys = [window_key, throttle_key]
        self.limit = limit
        self.window_ms = window_ms

    def try_acquire(self, burst: int = 0) -> float:
        """Take a slot now and return 0, or return the seconds to wait for one. With a
        ``burst``, the send is paced: at most ``burst`` sends in any ``burst`` spacings
        (window / limit), so that it leaves the window's slots spread out."""
        wait_ms = self.scripts.rate_acquire(
            keys=self.keys, args=[self.limit, self.window_ms, uuid.uuid4().hex, burst]
        )
        return int(wait_ms) / 1000

    def acquire(self, sleep: Callable[[float], None], burst: int = 0) -> None:
        """Block (through ``sleep``) until a slot is taken (paced with a ``burst``)."""
        while (wait := self.try_acquire(burst)) > 0:
            log.debug("rate limit reached, waiting %.2fs", wait)
            sleep(wait)

    def throttled(self) -> int:
        """PagerDuty answered 429: cut the limit; return the new one."""
        return int(self.scripts.rate_throttled(keys=self.keys, args=[self.limit, self.window_ms]))

