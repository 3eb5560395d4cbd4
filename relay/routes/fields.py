"""Checks of single values of the routes file's channels: each returns the value as
kept, and '' or why it is wrong. Templates are compiled in the sandbox they run in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from relay.severity import LEVELS

SECURITY = ("starttls", "tls", "none")
# Message templates run here: they read a notice's fields and can reach nothing else.
SANDBOX = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)

Checked = tuple[Any, str]


def level(value: Any) -> Checked:
    return value, "" if value in LEVELS else "want one of " + ", ".join(LEVELS)


def count(value: Any) -> Checked:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value, "" if ok else "want a whole number above 0"


def seconds(value: Any) -> Checked:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 300
    return float(value) if ok else value, "" if ok else "want seconds, above 0 and at most 300"


def text(value: Any) -> Checked:
    return value, "" if isinstance(value, str) and value else "want a non-empty string"


def template(value: Any) -> Checked:
    if not isinstance(value, str) or not value:
        return value, "want a non-empty Jinja2 template"
    try:
        SANDBOX.from_string(value)
    except TemplateError as exc:
        return value, f"not a Jinja2 template: {exc}"
    return value, ""


def url(value: Any) -> Checked:
    try:
        parts = urlparse(value if isinstance(value, str) else "")
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # such as "Invalid IPv6 URL": a problem of the file, not a crash
        ok = False
    return value, "" if ok else "want an http:// or https:// URL"


def method(value: Any) -> Checked:
    ok = value in ("POST", "PUT", "PATCH")
    return value, "" if ok else "want POST, PUT or PATCH"


def headers(value: Any) -> Checked:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in value.items())
    return (tuple(value.items()) if ok else value,
            "" if ok else "want a mapping of header names to strings")


def security(value: Any) -> Checked:
    return value, "" if value in SECURITY else "want one of " + ", ".join(SECURITY)


def address(value: Any) -> Checked:
    ok = isinstance(value, str) and "@" in value and "\n" not in value
    return value, "" if ok else "want an email address"


def addresses(value: Any) -> Checked:
    items = [value] if isinstance(value, str) else value
    ok = isinstance(items, list) and bool(items) and all(address(v)[1] == "" for v in items)
    return tuple(items) if ok else value, "" if ok else "want one or more email addresses"
