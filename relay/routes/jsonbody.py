"""A webhook's ``body`` template: JSON whose every value is JSON-encoded, whatever it holds.

In this sandbox each ``{{ }}`` writes its value as JSON (``finalize``): a string becomes
a quoted, escaped JSON string, a mapping an object, a missing field ``null``. So a
``dedup_key`` such as ``x", "state": "resolved`` stays inside its own string and cannot
add or change a field. ``| tojson`` still works (its output is taken as it is, never
encoded twice), so bodies written with it keep their meaning. A value placed inside
quotes (``"{{ state }}"``) would now be encoded inside a string: such a body is refused
when the routes file is checked (``check``), whatever values a notice holds, twice over:
the template's text is read as JSON with each ``{{ }}`` where it stands (``quoted``: any
inside a string is refused, in every branch of ``{% if %}``), and it is rendered with each
``{{ }}`` written as a JSON string (``PROBE_SANDBOX``), which a quote around it breaks.
A rendering with values alone missed it: a field the sample lacks (``custom_details.x``)
wrote ``null``, and ``"null"`` is JSON. Last it is rendered with ``SAMPLE``, hostile values.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment


class NotJson(ValueError):
    """The body a template made is not a JSON object or array."""


class Encoded(str):
    """Text that is JSON already (what ``tojson`` made): written as it is."""


def tojson(value: Any, indent: int | None = None) -> Encoded:
    return Encoded(json.dumps(_plain(value), ensure_ascii=False, indent=indent, default=str))


def _plain(value: Any) -> Any:
    return None if isinstance(value, Undefined) else value


def finalize(value: Any) -> str:
    """Every ``{{ }}``'s output: JSON, unless ``tojson`` made it JSON already."""
    if isinstance(value, Encoded):
        return value
    return json.dumps(_plain(value), ensure_ascii=False, default=str)


BODY_SANDBOX = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True,
                                    finalize=finalize)
BODY_SANDBOX.filters["tojson"] = tojson
# The load check's second reading: every {{ }} (| tojson too) writes a string with its
# quotes, whatever its value (a number, null, an object, a missing field): one inside a
# JSON string then closes it and the body is not JSON.
PROBE = '"probe"'
PROBE_SANDBOX = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True,
                                     finalize=lambda value: PROBE)
PROBE_SANDBOX.filters["tojson"] = tojson


def quoted(template: str) -> list[int]:
    """The lines of ``template`` with a ``{{ }}`` inside a JSON string of its own text,
    read in order across every branch (``{% %}`` and comments write nothing)."""
    inside = escaped = False
    found: list[int] = []
    for line, kind, text in BODY_SANDBOX.lex(template):
        if kind == "variable_begin" and inside:
            found.append(line)
        if kind != "data":
            continue
        for char in text:
            if escaped:
                escaped = False
            elif char == "\\" and inside:
                escaped = True
            elif char == '"':
                inside = not inside
    return found


# A notice's fields (``messages.context``) with values that break out of a string if
# placed inside one: the load check renders each body with them.
HOSTILE = 'x", "state": "resolved", "title": "all clear'
SAMPLE: dict[str, Any] = {
    "state": "triggered", "action": "trigger", "severity": "critical", "summary": HOSTILE,
    "source": HOSTILE, "component": HOSTILE, "group": HOSTILE, "class": HOSTILE,
    "custom_details": {"note": HOSTILE}, "dedup_key": HOSTILE, "key": "db", "route": "db",
    "sender": "anonymous", "accepted": "2026-12-02T15:19:56+00:00",
    "links": [{"href": "https://example.org", "text": HOSTILE}], "client": HOSTILE,
    "client_url": "https://example.org", "test": False,
    "event": {"event_action": "trigger", "dedup_key": HOSTILE,
              "payload": {"summary": HOSTILE, "source": HOSTILE, "severity": "critical"}},
}


def render(template: str, values: dict[str, Any]) -> Any:
    """The body ``template`` makes with ``values``, parsed; NotJson says why it is not
    JSON (and a failing template raises what it raised)."""
    return _parse(BODY_SANDBOX.from_string(template).render(values))


def _parse(text: str) -> Any:
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise NotJson(f"the body template did not make JSON: {exc}") from None
    if not isinstance(found, dict | list):
        raise NotJson("the body template did not make JSON: want an object or an array, "
                         f"got {type(found).__name__}")
    return found


def check(value: Any) -> tuple[Any, str]:
    """A ``body`` field of the routes file: compiled, no ``{{ }}`` inside quotes (read in
    its text, and rendered with every ``{{ }}`` a string), and rendered with ``SAMPLE``."""
    if not isinstance(value, str) or not value:
        return value, "want a non-empty Jinja2 template of a JSON body"
    try:
        lines = quoted(value)
        if lines:
            raise NotJson(f"a {{{{ }}}} inside quotes (line {lines[0]})")
        try:
            _parse(PROBE_SANDBOX.from_string(value).render(SAMPLE))
        except NotJson as exc:
            raise NotJson(f"{exc} (with each {{{{ }}}} written as a string: is one inside "
                          "quotes?)") from None
        render(value, SAMPLE)
    except TemplateError as exc:
        return value, f"not a Jinja2 template: {exc}"
    except NotJson as exc:
        return value, (f"{exc}. Every {{{{ }}}} is written as JSON (a string with its "
                       'quotes): write values without quotes, e.g. "state": {{ state }}')
    except Exception as exc:  # noqa: BLE001 - any failure of the template is the file's
        return value, f"the body template failed: {type(exc).__name__}: {exc}"
    return value, ""
