"""Email: one message to every recipient over SMTP (STARTTLS, TLS or none): SMTP 2xx
sent, 4xx retry later, 5xx refused; some recipients refusing is a reply, not a retry
(sending again would repeat it to those who took it)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from relay.channels.senders.common import masked
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel

Smtp = Callable[..., smtplib.SMTP]


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
