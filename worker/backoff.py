"""Backoff between delivery attempts: exponential with full jitter, or Retry-After."""

from __future__ import annotations

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_random_exponential

from relay.errors import KeyBlocked, RetryLater


class wait_backoff(wait_base):  # noqa: N801 - tenacity's naming for wait strategies
    """Full-jitter exponential wait capped at ``cap_s``; a Retry-After the server sent
    wins instead (capped at ``after_cap_s``). A blocked key waits ``cap_s`` each time:
    a misconfiguration is fixed by a person, not by the next attempt."""

    def __init__(self, base_s: float, cap_s: float, after_cap_s: float) -> None:
        self.jitter = wait_random_exponential(multiplier=base_s, max=cap_s)
        self.cap_s = cap_s
        self.after_cap_s = after_cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, KeyBlocked):
            return self.cap_s
        if isinstance(error, RetryLater) and error.retry_after is not None:
            return min(error.retry_after, self.after_cap_s)
        return float(self.jitter(retry_state))
