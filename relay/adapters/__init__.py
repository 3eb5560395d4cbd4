"""Adapters: other tools' webhooks turned into PagerDuty Events API v2 events, which then
go through the same validation, authorisation and routes as events sent directly.

``alertmanager`` and ``grafana`` (Grafana alerting's webhook contact point) take one
webhook of many alerts; ``platform`` takes a platform event (type, level, message,
service, metadata). ``convert`` raises InvalidEvent naming every problem of the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.adapters import alertmanager, grafana, platform
from relay.severity import SeverityMap

Convert = Callable[[Any, SeverityMap], list[dict[str, Any]]]
ADAPTERS: dict[str, Convert] = {
    "alertmanager": alertmanager.convert,
    "grafana": grafana.convert,
    "platform-event": platform.convert,
}
