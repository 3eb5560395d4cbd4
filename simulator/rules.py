"""PagerDuty's checks of one event, as its Events API v2 documents them.

Each function returns PagerDuty-style error strings (empty when the event is valid).
Deliberately independent of ``relay.validation``: where the two disagree, a test sees
PagerDuty answer 400 to an event the relay answered 202.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

MAX_EVENT_BYTES = 512_000
SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}


def problems(path: str, body: bytes, event: Any) -> list[str]:
    """Every error PagerDuty would give for this request body (parsed as ``event``)."""
    if len(body) > MAX_EVENT_BYTES:
        return [f"Event is too large (maximum is {MAX_EVENT_BYTES} bytes)"]
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if path.endswith("/change/enqueue"):
        if isinstance(key, str) and key.startswith("R"):
            errors.append("Change events are not supported on ruleset routing keys")
        return errors + _payload(event.get("payload"), alert=False) + _links(event)
    action = event.get("event_action")
    if not _text(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup_key, str) and len(dedup_key) > 255:
        errors.append("'dedup_key' is too long (maximum is 255 characters)")
    elif action in ("acknowledge", "resolve") and not _text(dedup_key):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors += _payload(event.get("payload"), alert=True)
        errors += [f"'{name}' must be a string" for name in ("client", "client_url")
                   if name in event and not isinstance(event[name], str)]
        for index, image in enumerate(_list(event, "images")):
            if not isinstance(image, dict) or not _text(image.get("src")):
                errors.append(f"'images[{index}].src' is missing or blank")
    return errors + _links(event)


def _payload(payload: Any, alert: bool) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or blank"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not _text(summary):
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("'summary' is too long (maiximum is 1024 characters)")
    if alert and not _text(payload.get("source")):
        errors.append("'payload.source' is missing or blank")
    if alert and not _text(payload.get("severity")):
        errors.append("'payload.severity' is missing or blank")
    elif alert and payload["severity"] not in SEVERITIES:
        errors.append("'payload.severity' is invalid")
    stamp = payload.get("timestamp")
    if stamp is not None and not _timestamp(stamp):
        errors.append("'payload.timestamp' is invalid")
    names = ("component", "group", "class") if alert else ("source",)
    errors += [f"'payload.{name}' must be a string" for name in names
               if name in payload and payload[name] is not None
               and not isinstance(payload[name], str)]
    details = payload.get("custom_details")
    if details is not None and not isinstance(details, dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def _links(event: dict[str, Any]) -> list[str]:
    return [f"'links[{index}].href' is missing or blank"
            for index, link in enumerate(_list(event, "links"))
            if not isinstance(link, dict) or not _text(link.get("href"))]


def _list(event: dict[str, Any], name: str) -> list[Any]:
    value = event.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [None]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
