"""``POST /platform-event``: a platform event, as platform-notification services send:
``{"type": "deploy_failed", "level": "error", "message": "...", "service": "payments",
"metadata": {...}}``, authorised by its ``X-API-Key`` like any event.

It becomes a trigger (``"action": "resolve"`` or ``"acknowledge"`` for its follow-ups)
whose summary is ``message``, severity ``level``, source ``metadata.host`` (else the
service), component ``service``, class ``type``; custom_details hold ``service``,
``type`` and ``metadata``, so routes and source matchers can use
``custom_details.service``. The dedup_key is ``dedup_key`` when given, else
``service:type``: one open incident per kind of trouble per service.
"""

from __future__ import annotations

from typing import Any

from relay.adapters.webhook import SUMMARY_MAX
from relay.errors import InvalidEvent
from relay.severity import SeverityMap

ACTIONS = ("trigger", "acknowledge", "resolve")


def convert(body: Any, severities: SeverityMap) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise InvalidEvent(["body: want a platform event object"])
    problems = []
    for name in ("type", "service"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            problems.append(f"{name}: missing or not a string")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append("metadata: must be an object")
    action = body.get("action", "trigger")
    if action not in ACTIONS:
        problems.append(f"action: want one of {', '.join(ACTIONS)}, got {action!r}")
    message = body.get("message")
    if action == "trigger" and (not isinstance(message, str) or not message.strip()):
        problems.append("message: missing or not a string")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        problems.append("dedup_key: must be a string")
    if problems:
        raise InvalidEvent(problems)
    service, kind = body["service"], body["type"]
    event: dict[str, Any] = {"event_action": action,
                             "dedup_key": dedup_key or f"{service}:{kind}"}
    if action != "trigger":
        return [event]
    host = metadata.get("host")
    summary = str(message)
    event["payload"] = {
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[:SUMMARY_MAX - 1] + "…",
        "severity": severities.level(body.get("level")),
        "source": host if isinstance(host, str) and host else service,
        "component": service,
        "class": kind,
        "custom_details": {"service": service, "type": kind, "metadata": metadata},
    }
    return [event]
