"""Adapters: other tools' webhooks turned into PagerDuty Events API v2 events, which then
go through the same validation, authorisation and routes as events sent directly.

``alertmanager`` and ``grafana`` (Grafana alerting's webhook contact point) take one
webhook of many alerts; ``platform`` takes a platform event (type, level, message,
service, metadata). ``convert`` raises InvalidEvent naming every problem of the body.
``WATCHDOGS``: the adapters whose alerts can be heartbeat checks' Watchdogs (issue 28).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from relay.adapters import alertmanager, grafana, platform
from relay.heartbeats.model import Check
from relay.severity import SeverityMap

Convert = Callable[[Any, SeverityMap], list[dict[str, Any]]]
ADAPTERS: dict[str, Convert] = {
    "alertmanager": alertmanager.convert,
    "grafana": grafana.convert,
    "platform-event": platform.convert,
}
# (webhook, the checks with Watchdog matchers) -> ([(alert, check)], the webhook without
# those alerts)
Split = Callable[[Any, Sequence[Check]], tuple[list[tuple[dict[str, Any], Check]], Any]]
WATCHDOGS: dict[str, Split] = {
    "alertmanager": alertmanager.watchdogs,
    "grafana": grafana.watchdogs,
}
