"""Sending one message to a channel; every answer maps to one outcome:

    sent          2xx; SMTP accepted for every recipient     -> returns the reply
    retry later   408, 429, 5xx, a timeout, a connection      -> RetryLater (with the
                  error; SMTP 4xx                                Retry-After, if given)
    refused       any other status (400, 401, 403, 404, a     -> Rejected: the message lands
                  redirect...); SMTP 5xx; a failed template      in RQ's failed registry

RQ stores a failed job's traceback in Redis, chained exceptions included, and requests'
and urllib3's exceptions name the URL (a Slack or Teams webhook's URL is its secret). So
every exception raised here is made anew ``from None`` (no chain) and says only the
error's type, and a reply is stored with the channel's secrets (``secrets``) masked.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import requests

from relay.errors import Rejected, RetryLater
from relay.http import retry_after
from relay.routes.channels import Channel

MAX_REPLY = 500
MASK = "***"
Smtp = Callable[..., smtplib.SMTP]


def secrets(channel: Channel) -> list[str]:
    """What of ``channel`` must never be stored: its URL and each part of it that may be
    a secret (user info, path, query, long path segments), its token, password and
    header values; longest first."""
    found = {channel.url, channel.token, channel.password, *(v for _, v in channel.headers)}
    try:
        parts = urlsplit(channel.url)
        found |= {parts.path, parts.query, parts.fragment, parts.netloc.rpartition("@")[0]}
        found |= {segment for segment in re.split(r"[/?&=#;]", channel.url)[3:]
                  if len(segment) >= 8}
    except ValueError:
        pass
    return sorted((s for s in found if len(s) >= 4 and s != "/"), key=len, reverse=True)


def masked(channel: Channel, text: str) -> str:
    """``text`` (a channel's reply, an error) with the channel's secrets masked, cut."""
    for secret in secrets(channel):
        text = text.replace(secret, MASK)
    return text[:MAX_REPLY]


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
    except requests.Timeout as exc:  # requests' message names the URL: never chained
        raise RetryLater(f"timeout: {type(exc).__name__}") from None
    except requests.ConnectionError as exc:
        raise RetryLater(f"connection error: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        raise Rejected(f"request failed: {type(exc).__name__}") from None
    status = response.status_code
    reply = masked(channel, response.text[:MAX_REPLY + len(channel.url) + 200])
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
        reply = masked(channel, exc.smtp_error.decode(errors="replace")
                       if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error))
        error = RetryLater if 400 <= exc.smtp_code < 500 else Rejected
        raise error(f"SMTP {exc.smtp_code}", exc.smtp_code, reply) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        error = RetryLater if all(400 <= code < 500 for code in codes) else Rejected
        raise error("SMTP: every recipient refused", None,
                    masked(channel, str(exc.recipients))) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise Rejected(masked(channel, f"SMTP: {exc}")) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise RetryLater(masked(channel, f"SMTP: {type(exc).__name__}: {exc}")) from None
    if refused:  # some recipients took it: sending again would repeat it to them
        return masked(channel, f"sent; refused by {len(refused)} recipient(s): {refused}")
    return f"sent to {len(channel.to)} recipient(s)"
