"""``POST /adapters/alertmanager``: Prometheus Alertmanager's webhook (version 4).

Point a ``webhook_configs`` receiver at it, with ``send_resolved: true`` (the default)
and ``http_config: {authorization: {credentials: <API key>}}``; see ``webhook``.
"""

from __future__ import annotations

from typing import Any

from relay.adapters import webhook
from relay.adapters.webhook import alerts_to_events
from relay.severity import SeverityMap


def convert(body: Any, severities: SeverityMap) -> list[dict[str, Any]]:
    return alerts_to_events(body, severities, "Alertmanager")


watchdogs = webhook.watchdogs  # its Watchdog alerts (issue 28)
