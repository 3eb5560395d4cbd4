"""Routing keys: reading the keys file, masking, ids and incident-to-key choice.

Routing keys are secrets. Outside the HTTP body sent to PagerDuty they appear only
masked (``mask``) or as a one-way id (``key_id``), which names their Redis keys.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

KEY_RE = re.compile(r"^[A-Za-z0-9]{32}$")


def mask(key: str) -> str:
    """Show just enough of a key to tell keys apart: ``R0…a1b2``."""
    if len(key) < 16:
        return "…" + key[-2:] if len(key) > 4 else "…"
    return f"{key[:2]}…{key[-4:]}"


@functools.lru_cache(maxsize=1024)  # a handful of keys, hashed for every routed event
def key_id(key: str) -> str:
    """A stable, non-reversible id for a key, used in Redis key names."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def is_ruleset(key: str) -> bool:
    """Ruleset (event orchestration) keys start with R; they take no change events."""
    return key.startswith("R")


def parse_keys(lines: Iterable[str], source: str = "keys file") -> tuple[list[str], list[str]]:
    """Return (keys, problems): one 32-character key a line, blanks and # comments allowed."""
    keys: list[str] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not KEY_RE.match(line):
            problems.append(
                f"{source} line {number}: {mask(line)} is not a routing key "
                f"(want 32 letters or digits, got {len(line)} characters)"
            )
        elif line in seen:
            problems.append(
                f"{source} line {number}: {mask(line)} repeats line {seen[line]}"
            )
        else:
            seen[line] = number
            keys.append(line)
    return keys, problems


def read_keys(path: Path) -> tuple[list[str], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"RELAY_KEYS_FILE: cannot read {path}: {exc}"]
    keys, problems = parse_keys(text.splitlines(), str(path))
    if not keys and not problems:
        problems.append(f"RELAY_KEYS_FILE: {path} holds no routing key")
    return keys, problems


def choose_key(keys: Sequence[str], incident: str) -> str:
    """Pick the key for an incident by rendezvous hashing of its dedup_key.

    Every event of one incident lands on one key; adding or removing a key moves
    only the incidents of that key.
    """
    if not keys:
        raise ValueError("no routing key to choose from")

    def weight(key: str) -> bytes:
        return hashlib.sha256(f"{key_id(key)}\0{incident}".encode()).digest()

    return max(keys, key=weight)
