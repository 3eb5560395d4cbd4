"""The job that sends one notice to one channel (``deliver``), run by an RQ worker.

Before sending it keeps the channel's pace: a pause (set by a 429's Retry-After, or for
a while after a timeout or connection error, so that a channel that hangs costs one
timeout, not one per queued message), and the channel's sends a minute (the PagerDuty
lanes' sliding window, ``relay.limiter``; a 429 cuts it as PagerDuty's do). A short
wait is slept; a longer one, or a failure worth another try, returns RQ's ``Retry``
with the interval: the job's own growing backoff (with jitter), or longer when the
pause or Retry-After says so. A refusal, or the last failure of ``retries``, raises: RQ keeps the
job in its failed registry with the channel's reply (``pd-relay channels requeue``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
import requests
from rq import Retry, get_current_job

from relay.channels import messages, senders
from relay.channels.digest import Digest
from relay.channels.notice import Notice
from relay.errors import Rejected, RetryLater
from relay.limiter import RateLimiter
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile
from relay.scripts import Scripts
from relay.settings import Settings

log = logging.getLogger(__name__)
WAIT_MAX_S = 5.0  # waits up to this are slept in the job; longer ones go back to RQ
PAUSE_MAX_S = 3600.0


class Courier:
    def __init__(self, client: redis.Redis, settings: Settings, routes: RoutesFile,
                 session: requests.Session | None = None, smtp: senders.Smtp | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.client = client
        self.names = Names(settings.prefix)
        self.backoff = (settings.channel_retry_base_s, settings.channel_retry_max_s)
        self.channels: Mapping[str, Channel] = {c.name: c for c in routes.channels}
        self.templates = {(route.name, use.name): use.template for route in routes.routes
                          for use in route.channels if use.template}
        self.scripts = Scripts(client)
        self.session = session or requests.Session()
        self.smtp = smtp
        self.sleep = sleep
        self.jitter = jitter

    def deliver(self, name: str, data: dict[str, Any], retries_done: int = 0) -> Retry | str:
        """Send notice ``data`` to channel ``name``."""
        channel = self._channel(name)
        notice = Notice.from_json(data)
        what = f"{notice.state} dedup_key={notice.event.get('dedup_key')}"
        return self._send(channel, lambda: messages.message(
            channel, notice, self.templates.get((notice.route, name))), what, retries_done)

    def deliver_digest(self, name: str, data: dict[str, Any],
                       retries_done: int = 0) -> Retry | str:
        """Send digest ``data`` (``relay.channels.digest``) to channel ``name``."""
        channel = self._channel(name)
        digest = Digest.from_json(data)
        what = f"digest {digest.id} of {digest.total} notice(s)"
        return self._send(channel, lambda: messages.digest_message(channel, digest), what,
                          retries_done)

    def _channel(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is None:
            raise Rejected(f"no channel named {name} in the routes file this worker read")
        return channel

    def _send(self, channel: Channel, message: Callable[[], dict[str, Any]], what: str,
              retries_done: int) -> Retry | str:
        """Keep the channel's pace and pause, send ``message()``, retry or fail."""
        name = channel.name
        paused = self._paused(channel)
        if paused:
            return self._retry(channel, retries_done, paused)
        wait = self._pace(channel)
        if wait > 0:  # the pace: a wait of the normal kind, not a failure's backoff
            return Retry(max=channel.retries, interval=max(1, math.ceil(wait)))
        body = message()
        try:
            reply = senders.send(channel, body, self.session, self.smtp)
        except RetryLater as exc:
            self._failed(channel, what, exc, final=retries_done >= channel.retries)
            if exc.status == 429:
                self._limiter(channel).throttled()
            pause = exc.retry_after if exc.status else self.backoff[0]  # no answer at all
            if pause:
                self.client.set(self.names.channel_pause(name), "1",
                                px=max(1, int(min(pause, PAUSE_MAX_S) * 1000)))
            if retries_done >= channel.retries:
                raise Rejected(f"{exc.reason} after {retries_done} retries: {exc.reply}",
                               exc.status, exc.reply) from exc
            return self._retry(channel, retries_done, exc.retry_after or 0)
        except Rejected as exc:
            self._failed(channel, what, exc, final=True)
            raise Rejected(f"{exc.reason}: {exc.reply}" if exc.reply else exc.reason,
                           exc.status, exc.reply) from exc
        self.client.hincrby(self.names.channel_stats, f"{name}:sent", 1)
        log.info("channel %s: sent %s", name, what)
        return reply

    def _limiter(self, channel: Channel) -> RateLimiter:
        n = self.names
        return RateLimiter(self.scripts, n.channel_window(channel.name),
                           n.channel_throttle(channel.name), channel.per_minute, 60_000)

    def _retry(self, channel: Channel, retries_done: int, at_least: float) -> Retry:
        """Try again after the job's backoff (growing, jittered), or ``at_least``."""
        backoff = min(self.backoff[1], self.backoff[0] * 2**retries_done)
        interval = max(at_least, backoff * (0.5 + self.jitter() / 2))
        return Retry(max=channel.retries, interval=max(1, math.ceil(interval)))

    def _paused(self, channel: Channel) -> float:
        """Sleep out a short pause of the channel; return a longer one (0: none)."""
        pause_ms = self.client.pttl(self.names.channel_pause(channel.name))
        if pause_ms <= 0:
            return 0.0
        if pause_ms / 1000 > WAIT_MAX_S:
            return pause_ms / 1000
        self.sleep(pause_ms / 1000)
        return 0.0

    def _pace(self, channel: Channel) -> float:
        """Sleep out a short wait for the channel's pace; return a longer one."""
        limiter = self._limiter(channel)
        while (wait := limiter.try_acquire()) > 0:
            if wait > WAIT_MAX_S:
                return wait
            self.sleep(wait)
        return 0.0

    def _failed(self, channel: Channel, what: str, exc: RetryLater | Rejected,
                final: bool) -> None:
        reason = f"{exc.reason}: {exc.reply[:200]}" if exc.reply else exc.reason
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.names.channel_stats, mapping={
                f"{channel.name}:error": reason, f"{channel.name}:error_at": int(time.time())})
            if final:
                pipe.hincrby(self.names.channel_stats, f"{channel.name}:failed", 1)
            pipe.execute()
        log.warning("channel %s: %s %s: %s", channel.name,
                    "gave up on" if final else "will retry", what, reason)


_courier: Courier | None = None


def install(courier: Courier) -> None:
    """The courier this process's jobs use (``pd-relay channel-worker`` installs it)."""
    global _courier
    _courier = courier


def deliver(name: str, data: dict[str, Any]) -> Retry | str:
    """The RQ job: send notice ``data`` to channel ``name``."""
    job = get_current_job()
    return _installed().deliver(name, data, (job.number_of_retries or 0) if job else 0)


def deliver_digest(name: str, data: dict[str, Any]) -> Retry | str:
    """The RQ job: send digest ``data`` to channel ``name``."""
    job = get_current_job()
    return _installed().deliver_digest(name, data, (job.number_of_retries or 0) if job else 0)


def _installed() -> Courier:
    if _courier is None:
        raise RuntimeError("run channel jobs with `pd-relay channel-worker`, which reads the "
                           "routes file and installs the courier")
    return _courier
