"""The ``operators`` section of the routes file: who may look at the relay's pages and
history API (``viewer``) and who may also replay and purge dead letters (``admin``).
Tokens are kept as hashes, like the sources' API keys (``hashes`` checks both).

    operators:
      - name: alice
        role: admin              # or viewer
        tokens: [sha256:...]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLES = ("viewer", "admin")
FIELDS = {"name", "role", "tokens"}  # what an entry may hold
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Operator:
    name: str
    role: str  # viewer or admin
    token_hashes: frozenset[str] = frozenset()

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def operator(at: str, entry: dict[str, Any], name: str | None,
             problem: Callable[[str, str], None]) -> Operator | None:
    """One entry, checked (problems noted; its name and unknown fields by the routes
    file's checker); None when its name is bad."""
    role = entry.get("role", "viewer")
    if role not in ROLES:
        problem(f"{at}.role", "want viewer or admin")
    tokens = hashes(f"{at}.tokens", entry.get("tokens"), problem)
    return Operator(name, str(role), tokens) if name else None


def hashes(at: str, raw: Any, problem: Callable[[str, str], None]) -> frozenset[str]:
    """A list of token hashes (operators' tokens, sources' API keys), checked."""
    if not isinstance(raw, list) or not raw:
        problem(at, "want a list of token hashes (`pd-relay token new NAME` prints one)")
        return frozenset()
    for n, digest in enumerate(raw):
        if not isinstance(digest, str) or not HASH_RE.match(digest):
            problem(f"{at}[{n}]", "want 'sha256:' and 64 hex digits, as `pd-relay token new "
                    "NAME` prints (never the token itself)")
    return frozenset(map(str, raw))
