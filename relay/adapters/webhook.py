"""Alertmanager's webhook (version 4) and Grafana's, which shares its shape: one PagerDuty
event per alert.

A firing alert is a trigger, a resolved one its resolve; the dedup_key is the alert's
fingerprint (a hash of its labels when the sender gives none), so the resolve finds its
trigger. The trigger's payload: ``summary`` from the ``summary`` annotation, else
``description``, else the ``alertname`` label (cut to 1024 characters); ``severity``
from the ``severity`` label (``relay.severity``); ``source`` from ``instance``, else
``host``, ``job``, ``alertname``; ``component`` from ``job`` (else ``service``);
``group`` from ``cluster`` (else ``namespace``); ``class`` from ``alertname``;
``timestamp`` from ``startsAt``; every label and annotation in ``custom_details``;
``generatorURL`` and a ``runbook_url`` annotation as links.

Watchdog alerts (issue 28) are split off first (``watchdogs``): an alert whose labels
match every matcher of a check's ``watchdog`` is that check's ping when firing, ignored
when resolved, and never an event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from relay.body import MAX_EVENTS, too_many
from relay.errors import InvalidEvent
from relay.heartbeats.config import labels_match
from relay.heartbeats.model import Check
from relay.severity import SeverityMap

SUMMARY_MAX = 1024
_FRACTION = re.compile(r"(\.\d{6})\d+")


def alerts_to_events(body: Any, severities: SeverityMap, client: str,
                     links: tuple[tuple[str, str], ...] = (),
                     details: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``links``: (alert field, link text) beyond generatorURL; ``details``: alert fields
    copied into custom_details."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        raise InvalidEvent([f"body: not a {client} webhook (want an object with alerts)"])
    if not body["alerts"]:
        raise InvalidEvent(["alerts: empty, no alert to send"])
    if len(body["alerts"]) > MAX_EVENTS:  # an event per alert, refused before any is read
        raise InvalidEvent([too_many(len(body["alerts"]), " alerts")])
    external = body.get("externalURL")
    events, problems = [], []
    for n, alert in enumerate(body["alerts"]):
        at = f"alerts[{n}]"
        if not isinstance(alert, dict):
            problems.append(f"{at}: want an object")
            continue
        labels, annotations = alert.get("labels") or {}, alert.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            problems.append(f"{at}: labels and annotations must be objects")
            continue
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            problems.append(f"{at}.status: want firing or resolved, got {status!r}")
            continue
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            text = json.dumps(labels, sort_keys=True, ensure_ascii=False)
            fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        if status == "resolved":
            events.append({"event_action": "resolve", "dedup_key": fingerprint})
            continue
        event = _trigger(alert, labels, annotations, fingerprint, severities, client, links)
        event["payload"]["custom_details"].update(
            {name: alert[name] for name in details if alert.get(name) is not None})
        if isinstance(external, str) and external:
            event["client_url"] = external
        events.append(event)
    if problems:
        raise InvalidEvent(problems)
    return events


def watchdogs(body: Any, checks: Sequence[Check]
              ) -> tuple[list[tuple[dict[str, Any], Check]], Any]:
    """(alert, check) for each alert of the webhook whose labels match every one of a
    check's ``watchdog`` matchers, and the webhook without those alerts. A body
    ``alerts_to_events`` would refuse whole, and an alert it would refuse, are left as
    they are, for it to say why."""
    alerts = body.get("alerts") if isinstance(body, dict) else None
    if not checks or not isinstance(alerts, list) or len(alerts) > MAX_EVENTS:
        return [], body
    found: list[tuple[dict[str, Any], Check]] = []
    rest = []
    for alert in alerts:
        labels = alert.get("labels") if isinstance(alert, dict) else None
        watched = [check for check in checks if labels_match(check.watchdog, labels)] \
            if isinstance(labels, dict) and alert.get("status") in ("firing", "resolved") \
            else []
        found.extend((alert, check) for check in watched)
        if not watched:
            rest.append(alert)
    return found, (dict(body, alerts=rest) if found else body)


def _trigger(alert: dict[str, Any], labels: dict[str, Any], annotations: dict[str, Any],
             fingerprint: str, severities: SeverityMap, client: str,
             links: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    def first(mapping: dict[str, Any], *names: str) -> str | None:
        for name in names:
            value = mapping.get(name)
            if isinstance(value, str) and value.strip():
                return value
        return None

    summary = first(annotations, "summary", "description") or first(labels, "alertname") \
        or f"{client} alert"
    if len(summary) > SUMMARY_MAX:
        summary = summary[:SUMMARY_MAX - 1] + "…"
    payload: dict[str, Any] = {
        "summary": summary,
        "source": first(labels, "instance", "host", "job", "alertname") or client,
        "severity": severities.level(labels.get("severity")),
        "custom_details": {"labels": labels, "annotations": annotations},
    }
    for field, names in (("component", ("job", "service")), ("group", ("cluster", "namespace")),
                         ("class", ("alertname",))):
        value = first(labels, *names)
        if value:
            payload[field] = value
    starts = alert.get("startsAt")
    if isinstance(starts, str) and starts and not starts.startswith("0001-"):
        payload["timestamp"] = _FRACTION.sub(r"\1", starts)
    found = [(alert.get("generatorURL"), "Source")] + [(alert.get(f), t) for f, t in links]
    found.append((annotations.get("runbook_url"), "Runbook"))
    event: dict[str, Any] = {
        "event_action": "trigger", "dedup_key": fingerprint, "payload": payload,
        "client": client,
        "links": [{"href": href, "text": text} for href, text in found
                  if isinstance(href, str) and href],
    }
    return event
