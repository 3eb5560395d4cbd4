"""A notice written for a channel: a line a person reads at a glance (state, severity,
summary), then source, key, dedup_key and links; in each type's own form.

A channel's ``template`` (or a route's, for that route's events) replaces the text; a
webhook's ``body`` replaces its JSON. Templates are Jinja2 in a sandbox: they read the
notice's fields (``context``) and can reach nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import TemplateError

from relay.channels import escape, forms, phone
from relay.channels.digest import Digest, outline
from relay.channels.notice import Notice, payload_of
from relay.errors import Rejected
from relay.routes import jsonbody
from relay.routes.channels import Channel

WEBEX_BYTES = 7439  # the most markdown Webex takes in a message (its messages API)
MARKS = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
DONE = {"resolved": "✅", "acknowledged": "👀", "maintenance": "🔧"}  # a state's own mark


def context(notice: Notice) -> dict[str, Any]:
    """What a template may read."""
    event = notice.event
    payload = payload_of(event)
    accepted = datetime.fromtimestamp(notice.accepted_ms / 1000, UTC)
    return {
        "state": notice.state, "action": notice.action, "severity": notice.severity,
        "summary": notice.summary or str(payload.get("summary", "")),
        "source": payload.get("source", ""), "component": payload.get("component", ""),
        "group": payload.get("group", ""), "class": payload.get("class", ""),
        "custom_details": payload.get("custom_details", {}),
        "dedup_key": event.get("dedup_key", ""), "key": notice.key, "route": notice.route,
        "sender": notice.source, "accepted": accepted.isoformat(timespec="seconds"),
        "links": [link for link in event.get("links", []) if isinstance(link, dict)],
        "client": event.get("client", ""), "client_url": event.get("client_url", ""),
        "test": notice.test, "event": event,
    }


def render(template: str, values: dict[str, Any], style: escape.Style = escape.PLAIN) -> str:
    """A chat template rendered; in a chat's style every ``{{ }}`` is escaped for it."""
    try:
        return escape.SANDBOXES[style].from_string(template).render(values)
    except TemplateError as exc:  # the same notice would fail again: not worth retries
        raise Rejected(f"template failed: {type(exc).__name__}: {exc}") from exc


def text(values: dict[str, Any], style: escape.Style = escape.PLAIN) -> tuple[str, list[str]]:
    """The default message: a headline, and detail lines, each sender value escaped for
    the platform (``style``) and only http(s) links made links."""
    state, severity, esc = values["state"], values["severity"], style.escape
    mark = DONE.get(state, MARKS.get(severity, ""))
    test = "[test] " if values["test"] else ""
    headline = f"{mark} {test}{state.upper()} [{esc(severity)}] {esc(values['summary'])}"
    details = [f"{name}: {esc(values[field])}" for name, field in
               (("source", "source"), ("component", "component"), ("key", "key"),
                ("route", "route"), ("dedup_key", "dedup_key"), ("accepted", "accepted"))
               if values[field]]
    details += [escape.link(style, link.get("text"), link.get("href", ""))
                for link in values["links"]]
    if values["client_url"]:
        details.append(escape.link(style, values["client"] or "client", values["client_url"]))
    return headline.strip(), details


def message(channel: Channel, notice: Notice, template: str | None = None) -> dict[str, Any]:
    """What to send: a JSON body for the HTTP types, {subject, text} for email, the
    new types' fields (``relay.channels.forms``)."""
    values = context(notice)
    own = template or channel.template
    if channel.type in forms.TYPES:
        return forms.notice(channel, values, own, render, text)
    style = escape.STYLES.get(channel.type, escape.PLAIN)
    headline, details = text(values, style)
    bold = style.bold
    body = render(own, values, style) if own else \
        "\n".join([f"{bold}{headline}{bold}" if channel.type != "teams" else headline,
                   *details])
    if channel.type == "webhook":
        if channel.body:
            try:
                found: dict[str, Any] = jsonbody.render(channel.body, values)
            except TemplateError as exc:
                raise Rejected(f"template failed: {type(exc).__name__}: {exc}") from None
            except jsonbody.NotJson as exc:
                raise Rejected(str(exc)) from None
            return found
        return {"text": body, "notice": {k: v for k, v in values.items() if k != "event"},
                "event": notice.event}
    subject = render(channel.subject, values) if channel.subject else headline
    return wrap(channel, body, subject, bolded=not own)


def digest_message(channel: Channel, digest: Digest) -> dict[str, Any]:
    """A digest (``relay.channels.digest``) written for ``channel``'s type."""
    if channel.type in forms.TYPES:
        return forms.digest(channel, digest)
    style = escape.STYLES.get(channel.type, escape.PLAIN)
    headline, lines, tail = outline(digest)
    shown = [style.escape(line) for line in lines] + ([tail] if tail else [])
    bold = style.bold
    if channel.type == "webex":  # Webex refuses markdown over WEBEX_BYTES: whole lines
        head = f"{bold}{style.escape(headline)}{bold}"
        kept = phone.lines_within(shown[:len(lines)], WEBEX_BYTES - len(head.encode()) - 40,
                                  lambda text: len(text.encode()))
        hidden = digest.total - len(kept)
        return wrap(channel, "\n".join([head, *kept, *([f"and {hidden} more"] if hidden > 0
                                                        else [])]), headline)
    body = "\n".join([f"{bold}{style.escape(headline)}{bold}" if channel.type != "teams"
                      else headline, *shown])
    if channel.type == "webhook":
        return {"text": body, "digest": digest.to_json()}
    return wrap(channel, body, headline)


def wrap(channel: Channel, body: str, subject: str, bolded: bool = True) -> dict[str, Any]:
    """``body`` (the message's text) in the JSON (or mail) ``channel``'s type takes."""
    if channel.type == "slack":  # no previews: a sender's link fetches nothing
        return {"text": body, "unfurl_links": False, "unfurl_media": False}
    if channel.type == "mattermost":
        return {"text": body}
    if channel.type == "teams":
        blocks = [{"type": "TextBlock", "text": line, "wrap": True} for line in body.split("\n")]
        if blocks and bolded:
            blocks[0].update(weight="Bolder", size="Medium")
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard", "version": "1.4", "body": blocks}
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
    if channel.type == "webex":
        return {"roomId": channel.room, "markdown": body}
    if channel.type == "webhook":
        return {"text": body}
    return {"subject": " ".join(subject.split())[:200], "text": body}
