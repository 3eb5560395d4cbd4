"""Small stand-ins for the heartbeat family's catalog and store (``relay.heartbeats``), as
the contract describes them, for the ingress's own tests: what the ingress asked for is
recorded, and Redis failing can be played."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import redis

from relay.heartbeats.model import Check, Ping


class FakeChecks:
    def __init__(self, *checks: Check) -> None:
        self.by_name = {check.name: check for check in checks}
        self.read = True

    def get(self, name: str) -> Check | None:
        return self.by_name.get(name)

    def watchdogs(self) -> tuple[Check, ...]:
        return tuple(check for check in self.by_name.values() if check.watchdog)


@dataclass
class FakePings:
    tokens: dict[str, str] = field(default_factory=dict)  # name -> SHA-256 of its token
    calls: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False

    def new_token(self, name: str, token: str) -> str:
        self.tokens[name] = hashlib.sha256(token.encode()).hexdigest()
        return token

    def token_matches(self, name: str, token: str) -> bool:
        if self.down:
            raise redis.ConnectionError("Redis is down")
        wanted = self.tokens.get(name, "")
        given = hashlib.sha256(token.encode()).hexdigest()
        return hmac.compare_digest(wanted, given) and bool(wanted)

    def ping(self, check: Check, signal: str, body: bytes = b"", by: str = "",
             exit_status: int | None = None) -> Ping:
        if self.down:
            raise redis.ConnectionError("Redis is down")
        self.calls.append({"name": check.name, "signal": signal, "body": body, "by": by,
                           "exit_status": exit_status})
        state = "down" if signal == "fail" else "started" if signal == "start" else "up"
        return Ping(check.name, state, 1_796_000_000.0, 1_796_000_300.0)
