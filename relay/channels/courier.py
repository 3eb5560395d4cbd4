"""The courier: sends one notice or digest to one channel (``Courier.deliver``,
``deliver_digest``) for the RQ jobs of relay.channels.jobs.

Before sending it keeps the channel's pace: a pause (set by a 429's Retry-After, or for
a while after a timeout or connection error, so that a channel that hangs costs one
timeout, not one per queued message), and the channel's sends a minute (the PagerDuty
lanes' sliding window, ``relay.limiter``; a 429 that does not say when to come back cuts
it as PagerDuty's do: one that does is obeyed by the pause alone). A short
wait is slept; a longer one returns a ``Wait`` (RQ's ``Retry``) for that long, and a
failure worth another try a ``Retry`` after the job's own growing backoff (with jitter),
or longer when the pause or Retry-After says so. Only failed sends count toward the
channel's ``retries`` (the job counts them: relay.channels.jobs.run). A refusal, the last
failure of ``retries``, or a message that waited longer than ``wait_max_s`` for its
channel (a pace far behind its messages) raises: RQ keeps the job in its failed registry
with the reason (``pd-relay channels requeue``).

First of all it asks the channel's breaker (``relay.channels.breaker``). While it is
open the message is not tried: it is held (``park``: the gathering ``breaker`` of
relay.channels.gather, due at the next probe) and the job ends ("held: breaker open").
The failure that opens it, and a failed probe, hold their own message too, not RQ's
failed registry. When a probe succeeds the breaker closes and the held gathering is
made due at once (``postpone`` to now): what waited goes out as one digest. Every
send's outcome is recorded. A digest whose job fails otherwise, or is abandoned (its
worker killed: RQ's clean-up calls the job's ``on_failure``), while the breaker is open
is held again (``hold_again``): a probe that was the held messages is not lost.
"""

from __future__ import annotations

import importlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import redis
import requests
from rq import Retry

from relay.channels import messages, senders
from relay.channels.breaker import Breakers, Verdict
from relay.channels.digest import Digest
from relay.channels.notice import Notice
from relay.channels.rqjobs import Wait, wait_max_s
from relay.errors import Rejected, RetryLater
from relay.limiter import RateLimiter
from relay.logs import scrub_also
from relay.names import Names
from relay.routes.channels import Channel
from relay.routes.config import RoutesFile
from relay.scripts import Scripts
from relay.settings import Settings

log = logging.getLogger(__name__)
WAIT_MAX_S = 5.0  # waits up to this are slept in the job; longer ones go back to RQ
PAUSE_MAX_S = 3600.0
HELD = "breaker"  # the gathering a channel's messages wait in while its breaker is open


class Gathering(Protocol):
    """What the courier uses of relay.channels.gather.Gatherings."""

    def park(self, channel: str, group: str, item: Notice | Digest, due_ms: int) -> Any: ...

    def postpone(self, channel: str, group: str, due_ms: int) -> Any: ...


class Courier:
    def __init__(self, client: redis.Redis, settings: Settings, routes: RoutesFile,
                 session: requests.Session | None = None, smtp: senders.Smtp | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random,
                 gatherings: Gathering | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.names = Names(settings.prefix)
        self.backoff = (settings.channel_retry_base_s, settings.channel_retry_max_s)
        self.channels: Mapping[str, Channel] = {c.name: c for c in routes.channels}
        # what is logged here, urllib3's lines too (one names a request's whole URL: a
        # webhook's, a bot token in Telegram's path), has these channels' secrets masked
        scrub_also([secret for c in routes.channels for secret in senders.secrets(c)])
        self.templates = {(route.name, use.name): use.template for route in routes.routes
                          for use in route.channels if use.template}
        self.scripts = Scripts(client)
        self.session = session or requests.Session()
        self.smtp = smtp
        self.sleep = sleep
        self.jitter = jitter
        self.clock = clock
        self.breakers = Breakers(client, self.names, clock)
        self._held = gatherings

    @property
    def gatherings(self) -> Gathering:
        """Where held messages wait: relay.channels.gather (looked up when first needed)."""
        if self._held is None:
            gather = importlib.import_module("relay.channels.gather")
            self._held = gather.Gatherings(self.client, self.names, clock=self.clock)
        return self._held

    def deliver(self, name: str, data: dict[str, Any], retries_done: int = 0,
                waited_s: float = 0.0) -> Retry | str:
        """Send notice ``data`` to channel ``name`` (``retries_done``: its failed sends so
        far; ``waited_s``: how long it was handed back to wait)."""
        channel = self._channel(name)
        notice = Notice.from_json(data)
        what = f"{notice.state} dedup_key={notice.event.get('dedup_key')}"
        return self._send(channel, lambda: messages.message(
            channel, notice, self.templates.get((notice.route, name))), what, retries_done,
            notice, waited_s)

    def deliver_digest(self, name: str, data: dict[str, Any], retries_done: int = 0,
                       waited_s: float = 0.0) -> Retry | str:
        """Send digest ``data`` (``relay.channels.digest``) to channel ``name``."""
        channel = self._channel(name)
        digest = Digest.from_json(data)
        what = f"digest {digest.id} of {digest.total} notice(s)"
        try:
            return self._send(channel, lambda: messages.digest_message(channel, digest), what,
                              retries_done, digest, waited_s)
        except Exception:
            if self.hold_again(name, data):  # open, or it was the probe: not failed
                return "held: breaker open"
            raise

    def hold_again(self, name: str, data: dict[str, Any]) -> bool:
        """Hold digest ``data`` again, due at the next probe (now if that is past), when
        its job failed or was abandoned while ``name``'s breaker is open (it may have
        been the probe: the breaker is never left open with nothing to probe with)."""
        channel = self.channels.get(name)
        state = channel and self.breakers.read(name, channel.breaker)
        if not (channel and state and state.open and channel.breaker.failures > 0):
            return False
        digest = Digest.from_json(data)
        self._hold(channel, digest, max(state.probe_at_ms, self.breakers.now_ms()),
                   f"digest {digest.id} of {digest.total} notice(s)", "failed while open")
        return True

    def _channel(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is None:
            raise Rejected(f"no channel named {name} in the routes file this worker read")
        return channel

    def _send(self, channel: Channel, message: Callable[[], dict[str, Any]], what: str,
              retries_done: int, item: Notice | Digest, waited_s: float = 0.0) -> Retry | str:
        """Ask the breaker, keep the channel's pace and pause, send ``message()``, record
        the outcome; retry, fail, or hold ``item`` while the breaker is open."""
        name, settings = channel.name, channel.breaker
        verdict = self.breakers.ask(name, settings)
        if verdict.state == "open":
            return self._hold(channel, item, verdict.probe_at_ms, what, "breaker open")
        paused = self._paused(channel) if verdict.state == "closed" else 0.0
        if paused:  # no send: a wait, as long as the pause or this job's backoff
            return self._wait(channel, what, waited_s,
                              self._retry(channel, retries_done, paused).intervals[0])
        wait = self._pace(channel)
        if wait > 0:  # the pace: a wait of the normal kind, not a failure's backoff
            self._release(channel, verdict)
            return self._wait(channel, what, waited_s, wait)
        body = message()
        try:
            reply = senders.send(channel, body, self.session, self.smtp)
        except RetryLater as exc:
            paused_by = exc.status == 429 and bool(exc.retry_after)
            change, probe_at = self.breakers.record(
                name, settings, "pause" if paused_by else "failed", verdict.probe)
            held = change in ("opened", "reopened", "open")
            self._failed(channel, what, exc, final=not held and retries_done >= channel.retries,
                         held=held)
            if exc.status == 429 and not paused_by:  # says not when: slow down (AIMD);
                self._limiter(channel).throttled()  # else its pause is the whole answer
            pause = exc.retry_after if exc.status else self.backoff[0]  # no answer at all
            if pause:
                self.client.set(self.names.channel_pause(name), "1",
                                px=max(1, int(min(pause, PAUSE_MAX_S) * 1000)))
            if held:
                return self._hold(channel, item, probe_at, what, change)
            if retries_done >= channel.retries:
                raise Rejected(f"{exc.reason} after {retries_done} retries: {exc.reply}",
                               exc.status, exc.reply) from exc
            return self._retry(channel, retries_done, exc.retry_after or 0)
        except Rejected as exc:
            change, probe_at = self.breakers.record(name, settings, "failed", verdict.probe)
            held = change in ("opened", "reopened", "open")
            self._failed(channel, what, exc, final=not held, held=held)
            if held:
                return self._hold(channel, item, probe_at, what, change)
            raise Rejected(f"{exc.reason}: {exc.reply}" if exc.reply else exc.reason,
                           exc.status, exc.reply) from exc
        change, _ = self.breakers.record(name, settings, "ok", verdict.probe)
        self.client.hincrby(self.names.channel_stats, f"{name}:sent", 1)
        if change == "closed":  # what waited while it was open goes out now, as a digest
            self.gatherings.postpone(name, HELD, self.breakers.now_ms())
            log.warning("channel %s: breaker closed: the probe (%s) was taken; the messages "
                        "held meanwhile go out as a digest", name, what)
        log.info("channel %s: sent %s", name, what)
        return reply

    def _hold(self, channel: Channel, item: Notice | Digest, probe_at_ms: int, what: str,
              why: str) -> str:
        """Keep ``item`` in the channel's ``breaker`` gathering, due at the next probe."""
        self.gatherings.park(channel.name, HELD, item, probe_at_ms)
        self.client.hincrby(self.names.channel_stats, f"{channel.name}:held", 1)
        level = logging.WARNING if why in ("opened", "reopened") else logging.INFO
        log.log(level, "channel %s: %s; held %s until the next probe in %.0f s", channel.name,
                {"opened": "breaker opened", "reopened": "the probe failed: breaker open "
                 "again"}.get(why, "breaker open"), what,
                max(0, probe_at_ms - self.breakers.now_ms()) / 1000)
        return "held: breaker open"

    def _release(self, channel: Channel, verdict: Verdict) -> None:
        """A probe that was not sent after all (the pace): the next ask may probe."""
        if verdict.state == "probe":
            self.breakers.record(channel.name, channel.breaker, "release", verdict.probe)

    def _limiter(self, channel: Channel) -> RateLimiter:
        n = self.names
        return RateLimiter(self.scripts, n.channel_window(channel.name),
                           n.channel_throttle(channel.name), channel.per_minute, 60_000)

    def _retry(self, channel: Channel, retries_done: int, at_least: float) -> Retry:
        """Try again after the job's backoff (growing, jittered), or ``at_least``. (RQ's
        ``max`` limits nothing: ``run`` counts the failed sends, and sets it.)"""
        backoff = min(self.backoff[1], self.backoff[0] * 2**retries_done)
        interval = max(at_least, backoff * (0.5 + self.jitter() / 2))
        return Retry(max=1, interval=max(1, math.ceil(interval)))

    def _wait(self, channel: Channel, what: str, waited_s: float, wait: float) -> Wait:
        """Wait ``wait`` s more, unless the message waited its ``wait_max_s`` already."""
        if waited_s >= wait_max_s(channel):
            exc = Rejected(f"waited {waited_s:.0f} s for the channel's pace and pauses: its "
                           f"messages come faster than it sends them (per_minute: "
                           f"{channel.per_minute})")
            self._failed(channel, what, exc, final=True)
            raise exc
        return Wait(max=1, interval=max(1, math.ceil(wait)))

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
                final: bool, held: bool = False) -> None:
        reason = f"{exc.reason}: {exc.reply[:200]}" if exc.reply else exc.reason
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.names.channel_stats, mapping={
                f"{channel.name}:error": reason, f"{channel.name}:error_at": int(time.time())})
            if final:
                pipe.hincrby(self.names.channel_stats, f"{channel.name}:failed", 1)
            pipe.execute()
        log.warning("channel %s: %s %s: %s", channel.name, "gave up on" if final else
                    "failed to send" if held else "will retry", what, reason)
