"""The phone's providers over HTTP: Pushover (messages.json, form fields, ``status`` 1
in the body or it was not taken), ntfy (JSON publish to the server's root, the topic in
the body; a token as Bearer, or basic auth) and SMS through Twilio's Messages API (one
form-encoded request per recipient, HTTP basic auth with the Account SID and token)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from relay.channels.forms import CANCEL
from relay.channels.senders import progress
from relay.channels.senders.common import answer, json_of, masked, request
from relay.errors import Rejected, RetryLater
from relay.routes.channels import Channel

TYPES = ("pushover", "ntfy", "sms")
# Twilio's refusals (400) that say nothing of the recipient or the message, but of now:
# 21611, the From number's queue is full (it drains at the number's pace)
TWILIO_LATER = {21611}


def send(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    if channel.type == "pushover":
        return pushover(channel, body, session)
    if channel.type == "ntfy":
        return ntfy(channel, body, session)
    return sms(channel, body, session)


def pushover(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    """An acknowledge or resolve of a critical first cancels the repeats of its emergency
    message (Pushover's receipts API, by the tag it was sent with): cancelling twice is
    harmless, so a retry does it again; a refusal of the cancel does not stop the
    message."""
    body = dict(body)
    cancel = body.pop(CANCEL, None)
    cancelled = ""
    if cancel:
        base = channel.url.rsplit("/", 1)[0]  # https://api.pushover.net/1
        response = request(channel, session, f"{base}/receipts/cancel_by_tag/{cancel}.json",
                           data={"token": channel.token})
        try:
            answer(channel, response)
            cancelled = f"; emergency repeats cancelled: {json_of(response).get('canceled', '?')}"
        except Rejected as exc:
            cancelled = f"; cancelling its emergency repeats refused: {exc.reason}"
    fields = {"token": channel.token, "user": channel.user,
              **{k: str(v) for k, v in body.items()}}
    response = request(channel, session, channel.url, data=fields)
    answer(channel, response)
    found = json_of(response)
    if found.get("status") != 1:
        raise Rejected("Pushover: status not 1", response.status_code,
                       masked(channel, response.text))
    receipt = " (emergency: receipt kept by Pushover)" if found.get("receipt") else ""
    return f"sent: request {found.get('request', '?')}{receipt}{cancelled}"


def ntfy(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    parts = urlsplit(channel.url)
    root, _, topic = parts.path.rstrip("/").rpartition("/")
    headers = {"Authorization": f"Bearer {channel.token}"} if channel.token else {}
    auth = (channel.username, channel.password) if channel.username else None
    response = request(channel, session,
                       urlunsplit(parts._replace(path=root + "/", query="", fragment="")),
                       json={"topic": topic, **body}, headers=headers, auth=auth)
    answer(channel, response)
    return f"sent: message {json_of(response).get('id', '?')}"


def sms(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    """One request per recipient, in order; who has it is remembered (``progress``): a
    retryable failure stops the round (the rest are tried on the job's retry), a
    recipient refused (a wrong number) is told in the reply and not tried again; when
    every recipient is refused (a wrong token: 401) none is remembered, so that the job
    requeued once it is right sends to all."""
    url = f"{channel.url.rstrip('/')}/2010-04-01/Accounts/{channel.account}/Messages.json"
    sender = {"From": channel.sender} if channel.sender else \
        {"MessagingServiceSid": channel.service}
    had = progress.done()
    sent: list[str] = []
    refused: list[str] = []
    wrong: list[str] = []  # refused: remembered unless every recipient was
    for number in channel.to:
        if number in had:
            continue
        try:
            response = request(channel, session, url, auth=(channel.account, channel.token),
                               data={"To": number, **sender, "Body": body["text"]})
            answer(channel, response)
        except (RetryLater, Rejected) as exc:
            later = isinstance(exc, RetryLater) or _twilio_code(exc.reply) in TWILIO_LATER
            if later:
                left = len(channel.to) - len(had) - len(sent) - len(refused)
                progress.mark(*wrong)
                why = f"Twilio {_twilio_error(exc.reply)}" if isinstance(exc, Rejected) \
                    else exc.reason
                raise RetryLater(f"{why} ({left} recipient(s) left)", exc.status, exc.reply,
                                 getattr(exc, "retry_after", None)) from None
            refused.append(f"{number[:4]}...: {exc.reason}: {_twilio_error(exc.reply)}")
            wrong.append(number)
            continue
        sent.append(number)
        progress.mark(number)
    if refused and not sent and not had:
        raise Rejected("Twilio refused every recipient", None,
                       masked(channel, "; ".join(refused)))
    progress.mark(*wrong)
    return masked(channel, f"sent to {len(sent)} recipient(s)" + (
        f" ({len(had)} had it before)" if had else "") + (
        f"; refused: {'; '.join(refused)}" if refused else ""))


def _twilio_code(reply: str) -> object:
    """Twilio's error code of a refusal's JSON body (None when it has none)."""
    import json

    try:
        found = json.loads(reply)
    except ValueError:
        return None
    return found.get("code") if isinstance(found, dict) else None


def _twilio_error(reply: str) -> str:
    """Twilio's error code and message of a refusal's JSON body."""
    import json

    try:
        found = json.loads(reply)
    except ValueError:
        return reply[:120]
    if not isinstance(found, dict):
        return reply[:120]
    return f"{found.get('code', '?')} {str(found.get('message', ''))[:120]}"
