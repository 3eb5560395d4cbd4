"""Sending one message to a channel; every answer maps to one outcome:

    sent          2xx; SMTP accepted for every recipient     -> returns the reply
    retry later   408, 429, 5xx, a timeout, a connection      -> RetryLater (with the
                  error; SMTP 4xx                                Retry-After, if given)
    refused       any other status (400, 401, 403, 404, a     -> Rejected: the message lands
                  redirect...); SMTP 5xx; a failed template      in RQ's failed registry
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import requests

from relay.errors import Rejected, RetryLater
from relay.http import retry_after
from relay.routes.channels import Channel

MAX_REPLY = 500
Smtp = Callable[..., smtplib.SMTP]


def send(channel: Channel, body: dict[str, Any], session: requests.Session,
         smtp: Smtp | None = None) -> str:
    """Send ``body`` (``messages.message``); return the channel's reply."""
    if channel.type == "email":
        return send_email(channel, body, smtp)
    headers = {"Content-Type": "application/json", **dict(channel.headers)}
    if channel.type == "webex":
        headers["Authorization"] = f"Bearer {channel.token}"
    try:
        response = session.request(channel.method, channel.url, json=body, headers=headers,
                                   timeout=(min(5.0, channel.timeout_s), channel.timeout_s),
                                   allow_redirects=False)
    except requests.Timeout as exc:
        raise RetryLater(f"timeout: {type(exc).__name__}") from exc
    except requests.ConnectionError as exc:
        raise RetryLater(f"connection error: {type(exc).__name__}") from exc
    except requests.RequestException as exc:
        raise Rejected(f"request failed: {type(exc).__name__}") from exc
    status, reply = response.status_code, response.text[:MAX_REPLY]
    if 200 <= status < 300:
        return reply
    if status in (408, 429) or status >= 500:
        after = retry_after(response.headers.get("Retry-After"))
        raise RetryLater(f"HTTP {status}", status, reply, after)
    raise Rejected(f"HTTP {status}", status, reply)


def send_email(channel: Channel, body: dict[str, Any], smtp: Smtp | None) -> str:
    mail = EmailMessage()
    mail["From"], mail["To"] = channel.sender, ", ".join(channel.to)
    mail["Subject"], mail["Date"] = body["subject"], formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=channel.sender.rpartition("@")[2] or None)
    mail.set_content(body["text"])
    context = ssl.create_default_context()
    try:
        if smtp is not None:
            server = smtp(channel.host, channel.port, timeout=channel.timeout_s)
        elif channel.security == "tls":
            server = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_s,
                                      context=context)
        else:
            server = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with server:
            if channel.security == "starttls":
                server.starttls(context=context)
            if channel.username:
                server.login(channel.username, channel.password)
            refused = server.send_message(mail)
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace")[:MAX_REPLY] \
            if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)[:MAX_REPLY]
        error = RetryLater if 400 <= exc.smtp_code < 500 else Rejected
        raise error(f"SMTP {exc.smtp_code}", exc.smtp_code, reply) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        error = RetryLater if all(400 <= code < 500 for code in codes) else Rejected
        raise error("SMTP: every recipient refused", None, str(exc.recipients)[:MAX_REPLY]) \
            from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise Rejected(f"SMTP: {exc}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise RetryLater(f"SMTP: {type(exc).__name__}: {exc}"[:MAX_REPLY]) from exc
    if refused:  # some recipients took it: sending again would repeat it to them
        return f"sent; refused by {len(refused)} recipient(s): {refused}"[:MAX_REPLY]
    return f"sent to {len(channel.to)} recipient(s)"
