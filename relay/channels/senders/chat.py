"""The chat webhooks and APIs that take a JSON body: Slack, Mattermost, Teams, Webex, a
webhook, Discord (Execute Webhook, ``?wait=true`` so that it answers with the message
or says why not) and Telegram (the Bot API's sendMessage)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from relay.channels.senders.common import answer, json_of, masked, request, seconds
from relay.errors import Rejected
from relay.routes.channels import Channel


def send(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    if channel.type == "discord":
        return discord(channel, body, session)
    if channel.type == "telegram":
        return telegram(channel, body, session)
    headers = {"Content-Type": "application/json", **dict(channel.headers)}
    if channel.type == "webex":
        headers["Authorization"] = f"Bearer {channel.token}"
    response = request(channel, session, channel.url, method=channel.method, json=body,
                       headers=headers)
    return answer(channel, response)


def discord(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    """A 429's body says ``retry_after`` (seconds, a float) besides the header."""
    parts = urlsplit(channel.url)
    query = urlencode([*((k, v) for k, v in parse_qsl(parts.query) if k != "wait"),
                       ("wait", "true")])
    response = request(channel, session, urlunsplit(parts._replace(query=query)), json=body)
    answer(channel, response, lambda r: seconds(json_of(r).get("retry_after")))
    message = json_of(response)
    return f"sent: message {message.get('id', '?')}"


def telegram(channel: Channel, body: dict[str, Any], session: requests.Session) -> str:
    """The Bot API answers ``{"ok": false, "error_code", "description", "parameters":
    {"retry_after"}}`` with the same HTTP status; the token is in the URL's path."""
    url = f"{channel.url.rstrip('/')}/bot{channel.token}/sendMessage"
    response = request(channel, session, url, json=body)
    answer(channel, response, lambda r: seconds(
        (json_of(r).get("parameters") or {}).get("retry_after")))
    found = json_of(response)
    if found.get("ok") is not True:
        raise Rejected("Telegram: not ok", response.status_code,
                       masked(channel, response.text))
    result = found.get("result") or {}
    return f"sent: message {result.get('message_id', '?') if isinstance(result, dict) else '?'}"
