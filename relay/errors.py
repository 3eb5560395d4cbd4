"""Every error pd-relay raises on purpose, in one tree.

    RelayError
    ├── ConfigError              bad settings or keys file; stops start-up
    ├── StoreFormatError         Redis holds formats this release cannot read; stops start-up
    ├── RecordFormatError        the history's PostgreSQL was migrated by a later release, or
    │                            not yet (``pd-relay history migrate``): says which
    ├── RequestError             a client's request is refused (HTTP status on the class)
    │   ├── InvalidEvent     400 the body is not a valid PD-CEF event (lists every problem)
    │   ├── Refused              the sender may not send (``sender`` names them)
    │   │   ├── Unauthorized 401 no API key or routing key that this relay knows
    │   │   └── Forbidden    403 the sender may not send this event (a source's matchers)
    │   ├── OperatorRequired 401 the pages, API, /metrics, /readyz: no operator token or session
    │   ├── AdminRequired    403 a change (replay, purge) by a viewer, or from another site
    │   ├── BadQuery         400 a history query's parameter is wrong
    │   ├── BadPing          400 a ping's signal is not start, fail or an exit status 0..255
    │   ├── UnknownCheck     404 a ping (by a known sender) names no heartbeat check
    │   ├── BodyTooLarge     413 the body is over the size limit
    │   └── Unavailable      503 the event could not be stored (Redis down, full, loading)
    │       ├── QueueFull        a key's queue (or all queues) at its cap: says which key
    │       ├── NotReplicated    stored on the primary, but fewer replicas than
    │       │                    RELAY_MIN_REPLICAS confirmed it in time: may be stored
    │       ├── StoreDown        Redis failed under any other request (the pages, the history
    │                            API, sign-out, replay, purge): a 503, never a 500
    │       └── RecordDown       the history's PostgreSQL (RELAY_HISTORY_DSN) does not answer
    └── DeliveryError            PagerDuty (or a channel) did not take an event
        ├── RetryLater           408, 429, 5xx, timeout, connection error: send it again later
        ├── KeyBlocked           401, 403, 404, 407, a redirect, ...: the relay or a proxy is
        │                        misconfigured; the key stops, keeps its events, retries slowly
        └── Rejected             400 or 413, or an event that cannot be sent: dead-letter it

Delivered is the third outcome of a send and is not an error (see worker.pagerduty).
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every pd-relay error."""


class ConfigError(RelayError):
    """Settings or keys file are invalid; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class StoreFormatError(RelayError):
    """Redis holds stored formats this release cannot read (relay.formats): the message
    names both versions and what to do."""


class RecordFormatError(RelayError):
    """The history's PostgreSQL holds a schema this release cannot write (a later
    release's), or none yet: the message names both versions and what to do."""


class RequestError(RelayError):
    status_code = 400
    status = "invalid event"
    message = "Event object is invalid"

    def __init__(self, errors: list[str] | None = None) -> None:
        self.errors = errors or []
        super().__init__("; ".join(self.errors) or self.message)

    def body(self) -> dict[str, object]:
        return {"status": self.status, "message": self.message, "errors": self.errors}


class InvalidEvent(RequestError):
    status_code = 400


class Refused(RequestError):
    """Who sent it may not: ``sender`` names them for the counts (a source's name,
    ``anonymous``, ``unknown-api-key``)."""

    def __init__(self, errors: list[str] | None = None, sender: str = "") -> None:
        super().__init__(errors)
        self.sender = sender


class Unauthorized(Refused):
    status_code = 401
    status = "unauthorized"
    message = "Authentication required: an API key of this relay, or one of its routing keys"


class Forbidden(Refused):
    status_code = 403
    status = "forbidden"
    message = "This sender may not send this event"


class OperatorRequired(RequestError):
    status_code = 401
    status = "unauthorized"
    message = ("An operator's token is needed (Authorization: Bearer), or a dashboard session "
               "(sign in at /ui/sign-in)")


class AdminRequired(RequestError):
    status_code = 403
    status = "forbidden"
    message = "Only an admin may do this, from the relay's own pages"


class BadQuery(RequestError):
    status_code = 400
    status = "invalid query"
    message = "A query parameter is invalid"


class BadPing(RequestError):
    status_code = 400
    status = "invalid ping"
    message = "The ping's signal is not one the relay knows"


class UnknownCheck(RequestError):
    """Answered only to a sender the relay knows (``relay.pings``): nobody else can tell
    which checks exist."""

    status_code = 404
    status = "not found"
    message = "No heartbeat check of that name"


class BodyTooLarge(RequestError):
    status_code = 413
    status = "request too large"
    message = "Request body is too large"


class Unavailable(RequestError):
    status_code = 503
    status = "unavailable"
    message = "Event store unavailable, nothing was queued; retry later"
    retry_after = 5


class QueueFull(Unavailable):
    status = "queue full"
    message = "A queue is full, nothing was queued; retry later"
    retry_after = 30  # a key drains about 60 events in that time


class NotReplicated(Unavailable):
    """WAIT confirmed fewer replicas than RELAY_MIN_REPLICAS within
    RELAY_REPLICA_TIMEOUT_MS: the events are on the primary, which a failover may lose;
    a client that sends them again may cause a duplicate, never a loss."""

    status = "not replicated"
    message = ("The events may be stored, but not yet on enough replicas to survive a "
               "failover; retry later")
    retry_after = 2

    @classmethod
    def short(cls, confirmed: int, wanted: int) -> NotReplicated:
        return cls([f"Redis: {confirmed} of {wanted} replicas confirmed the write"])


class StoreDown(Unavailable):
    """A Redis error no narrower guard caught, as the app's and the pages' 503."""

    message = "Redis does not answer; retry later"

    @classmethod
    def of(cls, exc: Exception) -> StoreDown:
        return cls([f"Redis: {type(exc).__name__}"])


class RecordDown(Unavailable):
    """The history's PostgreSQL (RELAY_HISTORY_DSN) could not be reached or failed.
    ``details`` (and ``str()``: the operator's log, ``trace``) name the server by its
    masked DSN, never its password; ``errors`` (the 503's body, which any API caller or
    dashboard viewer reads) names nothing of it."""

    message = "The history's PostgreSQL does not answer; retry later"
    retry_after = 5
    told = "the record in PostgreSQL does not answer"

    def __init__(self, details: list[str] | None = None) -> None:
        self.details = details or [self.told]
        super().__init__([self.told])

    def __str__(self) -> str:
        return "; ".join(self.details)

    @classmethod
    def of(cls, exc: Exception) -> RecordDown:
        """A failure in a search (the connection made): its kind, nothing of the server."""
        return exc if isinstance(exc, RecordDown) else cls([f"PostgreSQL: {type(exc).__name__}"])


class DeliveryError(RelayError):
    """PagerDuty did not take the event (a channel its message: relay/channels/senders.py
    maps its answers onto the same outcomes: RetryLater, or Rejected for good)."""

    def __init__(self, reason: str, status: int | None = None, reply: str = "") -> None:
        self.reason = reason
        self.status = status
        self.reply = reply
        super().__init__(reason)


class RetryLater(DeliveryError):
    """Transient: send the same event again after a wait (at least ``retry_after`` s)."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        reply: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, status, reply)
        self.retry_after = retry_after


class KeyBlocked(DeliveryError):
    """The answer says the relay's configuration is wrong (a wrong URL, a proxy, a key
    PagerDuty refuses), not the event: keep the event first in line and retry slowly.
    ``hint`` says what to check."""

    def __init__(self, reason: str, status: int | None = None, reply: str = "",
                 hint: str = "") -> None:
        super().__init__(reason, status, reply)
        self.hint = hint


class Rejected(DeliveryError):
    """Permanent: PagerDuty refused the event (or it cannot be sent at all); it goes to
    the dead-letter store."""
