"""``POST /adapters/grafana``: Grafana alerting's webhook contact point, which follows
Alertmanager's shape (``webhook``) and adds links to the dashboard, the panel and a
silence, and the values that fired."""

from __future__ import annotations

from typing import Any

from relay.adapters import webhook
from relay.adapters.webhook import alerts_to_events
from relay.severity import SeverityMap

LINKS = (("dashboardURL", "Dashboard"), ("panelURL", "Panel"), ("silenceURL", "Silence"))


def convert(body: Any, severities: SeverityMap) -> list[dict[str, Any]]:
    return alerts_to_events(body, severities, "Grafana", LINKS, ("values", "valueString"))


watchdogs = webhook.watchdogs  # its Watchdog alerts (issue 28)
