"""What the overview page shows, read from Redis in one place: the keys (``relay.status``),
the routes' and sources' counts, the channels' queues, open alarms, dead letters."""

from __future__ import annotations

from typing import Any

import redis

from relay.channels.breakerstate import breaker_line
from relay.channels.commands import read as read_channels
from relay.deadletters import DeadLetters
from relay.names import Names
from relay.routes.policy import Policy
from relay.settings import Settings
from relay.status import open_alarms, read_status
from relay.store import connect
from relay.tally import read as read_decisions


class Overview:
    def __init__(self, settings: Settings, client: redis.Redis, policy: Policy) -> None:
        self.settings = settings
        self.client = client
        self.names = Names(settings.prefix)
        self.policy = policy
        self._jobs: redis.Redis | None = None  # RQ's client (bytes), made when needed

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.client, self.names, self.settings.routing_keys)

    def read(self) -> dict[str, Any]:
        names = self.names
        return {
            "keys": read_status(self.client, names, self.settings),
            **read_decisions(self.client, names.decisions),
            "channels": self.channels(),
            "alarms": open_alarms(self.client, names),
            "dead_letters": int(self.client.zcard(names.dead_index)),
            "open_relay": self.settings.allow_anonymous,
        }

    def channels(self) -> dict[str, Any] | None:
        """The channels' queues and the outbox, None when the routes file has none."""
        channels = [c.name for c in self.policy.routes.channels]
        if not channels:
            return None
        if self._jobs is None:
            self._jobs = connect(self.settings, decode=False)
        found = read_channels(self.client, self._jobs, self.names, channels,
                              {c.name: c.breaker for c in self.policy.routes.channels})
        for row in found["channels"]:
            breaker = row["breaker"]
            row["breaker_text"] = breaker_line(breaker) if breaker["state"] == "open" \
                else breaker["state"]
        return found
