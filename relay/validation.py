"""PD-CEF validation: PagerDuty's documented Events API v2 contract.

Each check returns every problem found, each prefixed with its field path
(``[2].payload.severity``), so one 400 tells the sender all that is wrong.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
ROUTING_KEY_LENGTH = 32
OPTIONAL_STRINGS = ("component", "group", "class")


def alert_problems(event: Any, path: str = "") -> list[str]:
    """Problems with an alert event (trigger, acknowledge or resolve)."""
    if not isinstance(event, dict):
        return [f"{path or 'body'}: must be a JSON object (an event), got {_kind(event)}"]
    at = _prefix(path)
    problems = _routing_key_problems(event, at)
    action = event.get("event_action")
    if action in (None, ""):
        problems.append(f"{at}event_action is missing or blank")
    elif action not in ACTIONS:
        problems.append(f"{at}event_action must be one of {', '.join(ACTIONS)}, got {action!r}")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None:
        if not isinstance(dedup_key, str) or not dedup_key.strip():
            problems.append(f"{at}dedup_key must be a non-blank string")
        elif len(dedup_key) > MAX_DEDUP_KEY:
            problems.append(f"{at}dedup_key is too long (maximum is {MAX_DEDUP_KEY} characters)")
        elif _surrogate(dedup_key):  # checked first: routing hashes the dedup_key
            problems.append(f"{at}dedup_key holds a lone surrogate ({_surrogate(dedup_key)})")
    elif action in ("acknowledge", "resolve"):
        problems.append(f"{at}dedup_key is required to {action}")
    if action == "trigger" or action not in ACTIONS:
        problems += _payload_problems(event.get("payload"), f"{at}payload", alert=True)
        for name in ("client", "client_url"):
            problems += _string_problems(event, name, at)
    problems += _list_problems(event, "images", "src", at, ("href", "alt"))
    problems += _list_problems(event, "links", "href", at, ("text",))
    return problems


def change_problems(event: Any, path: str = "") -> list[str]:
    """Problems with a change event."""
    if not isinstance(event, dict):
        return [f"{path or 'body'}: must be a JSON object (an event), got {_kind(event)}"]
    at = _prefix(path)
    problems = _routing_key_problems(event, at)
    if "event_action" in event:
        problems.append(f"{at}event_action does not belong in a change event "
                        "(send alerts to /v2/enqueue)")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) >
                                  MAX_DEDUP_KEY or _surrogate(dedup_key)):
        problems.append(f"{at}dedup_key must be a string of at most {MAX_DEDUP_KEY} characters")
    problems += _payload_problems(event.get("payload"), f"{at}payload", alert=False)
    problems += _list_problems(event, "links", "href", at, ("text",))
    return problems


def unstorable_problems(value: Any, path: str) -> list[str]:
    """What in an event JSON cannot carry faithfully: lone UTF-16 surrogates (no UTF-8
    encoding exists for them) and numbers that overflowed to infinity. Called only when
    encoding the event failed, so the hot path pays nothing for it."""
    if isinstance(value, str):
        return [f"{path} holds a lone surrogate ({_surrogate(value)})"] if _surrogate(value) else []
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path} is a number too large for JSON"]
    problems: list[str] = []
    if isinstance(value, dict):
        for name, item in value.items():
            if _surrogate(name):
                problems.append(
                    f"{path} holds a lone surrogate ({_surrogate(name)}) in a member name")
            else:
                problems += unstorable_problems(item, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += unstorable_problems(item, f"{path}[{index}]")
    return problems


def _surrogate(text: str) -> str:
    """The first lone surrogate in ``text`` as an escape (``\\ud800``), or ""."""
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return f"\\u{ord(char):04x}"
    return ""


def _payload_problems(payload: Any, at: str, alert: bool) -> list[str]:
    if payload is None:
        return [f"{at} is missing"]
    if not isinstance(payload, dict):
        return [f"{at} must be an object, got {_kind(payload)}"]
    problems = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append(f"{at}.summary is missing or blank")
    elif len(summary) > MAX_SUMMARY:
        problems.append(f"{at}.summary is too long (maximum is {MAX_SUMMARY} characters)")
    source = payload.get("source")
    if alert and (not isinstance(source, str) or not source.strip()):
        problems.append(f"{at}.source is missing or blank")
    elif not alert:
        problems += _string_problems(payload, "source", at + ".")
    if alert:
        severity = payload.get("severity")
        if severity in (None, ""):
            problems.append(f"{at}.severity is missing or blank")
        elif severity not in SEVERITIES:
            problems.append(
                f"{at}.severity must be one of {', '.join(SEVERITIES)}, got {severity!r}"
            )
        for name in OPTIONAL_STRINGS:
            problems += _string_problems(payload, name, at + ".")
    timestamp = payload.get("timestamp")
    if timestamp is not None and not _is_iso8601(timestamp):
        problems.append(f"{at}.timestamp must be an ISO 8601 date-time, got {timestamp!r}")
    details = payload.get("custom_details")
    if details is not None and not isinstance(details, dict):
        problems.append(f"{at}.custom_details must be an object, got {_kind(details)}")
    return problems


def _routing_key_problems(event: dict[str, Any], at: str) -> list[str]:
    key = event.get("routing_key")
    if key is not None and (not isinstance(key, str) or len(key) != ROUTING_KEY_LENGTH):
        got = f"{len(key)} characters" if isinstance(key, str) else _kind(key)
        return [f"{at}routing_key must be a 32-character string, got {got}"]
    return []


def _string_problems(obj: dict[str, Any], name: str, at: str) -> list[str]:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        return [f"{at}{name} must be a string, got {_kind(value)}"]
    return []


def _list_problems(
    event: dict[str, Any], name: str, needs: str, at: str, optional: tuple[str, ...]
) -> list[str]:
    items = event.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"{at}{name} must be a list, got {_kind(items)}"]
    problems = []
    for index, item in enumerate(items):
        where = f"{at}{name}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object, got {_kind(item)}")
        elif not isinstance(item.get(needs), str) or not item[needs].strip():
            problems.append(f"{where}.{needs} is missing or blank")
        else:
            for field in optional:
                problems += _string_problems(item, field, where + ".")
    return problems


def _is_iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
