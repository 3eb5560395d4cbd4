"""Other tools' severities onto PagerDuty's four (critical, error, warning, info).

Alertmanager and Grafana carry whatever an alert's ``severity`` label says. The built-in
mapping knows common words; ``RELAY_SEVERITY_MAP`` adds or overrides (``page=critical,
ticket=warning``) and ``*=LEVEL`` sets the level of an unknown or missing severity
(default ``error``, as Alertmanager's own PagerDuty receiver sends).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LEVELS = ("critical", "error", "warning", "info")
BUILT_IN = {
    "critical": "critical", "crit": "critical", "fatal": "critical", "page": "critical",
    "emergency": "critical", "alert": "critical", "disaster": "critical",
    "error": "error", "err": "error", "high": "error", "major": "error",
    "warning": "warning", "warn": "warning", "average": "warning", "medium": "warning",
    "minor": "warning", "info": "info", "information": "info", "informational": "info",
    "notice": "info", "low": "info", "debug": "info", "none": "info", "ok": "info",
}


@dataclass(frozen=True)
class SeverityMap:
    words: dict[str, str] = field(default_factory=lambda: dict(BUILT_IN))
    default: str = "error"

    def level(self, word: object) -> str:
        if isinstance(word, str):
            return self.words.get(word.strip().lower(), self.default)
        return self.default


def parse_map(raw: str) -> SeverityMap:
    """``word=level,...``; ValueError naming what is wrong."""
    words, default = dict(BUILT_IN), "error"
    for item in filter(None, (part.strip() for part in raw.split(","))):
        word, sep, level = item.partition("=")
        word, level = word.strip().lower(), level.strip().lower()
        if not sep or not word or level not in LEVELS:
            raise ValueError(f"{item!r}: want word=level, level one of " + ", ".join(LEVELS))
        if word == "*":
            default = level
        else:
            words[word] = level
    return SeverityMap(words, default)
