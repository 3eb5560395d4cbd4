"""The ``self_alert`` section of the routes file: where the relay's own alarms go (a key
blocked, a key without a worker, a queue that stalls, dead letters, a failing channel).

    self_alert:
      keys: [ops]              # PagerDuty keys (by name): one of them takes each alarm
      channels: [ops-slack]    # and/or channels
      oldest_queued_s: 600     # a key's oldest queued event older than this: an alarm
      for_s: 60                # how long a condition must hold before it is an alarm
      history_lag_s: 300       # the record in PostgreSQL this far behind: an alarm
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from relay.routes.channels import Channel, Use, uses

FIELDS = {"keys", "channels", "oldest_queued_s", "for_s", "history_lag_s"}


@dataclass(frozen=True)
class SelfAlert:
    keys: tuple[str, ...] = ()  # key names
    channels: tuple[Use, ...] = ()
    oldest_queued_s: float = 600.0
    for_s: float = 60.0  # a condition alarms once it held this long (as Prometheus' `for`)
    history_lag_s: float = 300.0  # the export's lag above this: an alarm


def self_alert(raw: Any, key_names: Collection[str], channels: Mapping[str, Channel | None],
               problem: Callable[[str, str], None]) -> SelfAlert | None:
    """Check the section (problems noted: the file is then refused whole); None when it
    is absent."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problem("self_alert", "want a mapping with keys, channels and oldest_queued_s")
        return None
    for extra in sorted(set(raw) - FIELDS, key=str):
        problem(f"self_alert.{extra}", "unknown field (want " + ", ".join(sorted(FIELDS)) + ")")
    keys = raw.get("keys") or []
    if not isinstance(keys, list):
        problem("self_alert.keys", "want a list of key names")
        keys = []
    for n, key in enumerate(keys):
        if key not in key_names:
            problem(f"self_alert.keys[{n}]", f"no key named {str(key)[:40]!r} in the keys file")
    heard = uses("self_alert.channels", raw.get("channels"), channels, problem)
    if not keys and not heard:
        problem("self_alert", "name keys or channels for the relay's own alarms")
    seconds = []
    for field, default in (("oldest_queued_s", 600), ("for_s", 60), ("history_lag_s", 300)):
        value = raw.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problem(f"self_alert.{field}", "want seconds, 0 or more")
            value = default
        seconds.append(float(value))
    return SelfAlert(tuple(map(str, keys)), heard, *seconds)
