"""Sending one message to a channel; every answer maps to one outcome:

    sent          2xx; SMTP accepted for every recipient;     -> returns the reply
                  signal-cli exit 0
    retry later   408, 429, 5xx, a timeout, a connection      -> RetryLater (with the
                  error; SMTP 4xx; signal-cli 2, 3, 5, a         Retry-After, or the
                  network failure, its timeout; Twilio's         provider's own hint)
                  21611 (the From number's queue is full)
    refused       any other status (400, 401, 403, 404, a     -> Rejected: the message lands
                  redirect...); SMTP 5xx; a failed template;     in RQ's failed registry
                  Pushover's status 0; Telegram's ok false;
                  signal-cli 1, 4, 6, not found

The providers' own retry hints: Discord's and Telegram's 429 bodies (``retry_after``,
``parameters.retry_after``), signal-cli's ``retryAfterSeconds``. Messages to several
recipients (sms, signal) remember who has it (``progress``): a retry sends to the rest.
Every sender masks the channel's secrets (``secrets``) in what it raises and returns.
"""

from __future__ import annotations

from typing import Any

import requests

from relay.channels.senders import chat, push, signal
from relay.channels.senders.common import MASK, MAX_REPLY, masked, secrets
from relay.channels.senders.mail import Smtp, send_email
from relay.routes.channels import Channel

__all__ = ["MASK", "MAX_REPLY", "Smtp", "masked", "secrets", "send"]


def send(channel: Channel, body: dict[str, Any], session: requests.Session,
         smtp: Smtp | None = None) -> str:
    """Send ``body`` (``messages.message``); return the channel's reply."""
    if channel.type == "email":
        return send_email(channel, body, smtp)
    if channel.type == "signal":
        return signal.send(channel, body)
    if channel.type in push.TYPES:
        return push.send(channel, body, session)
    return chat.send(channel, body, session)
