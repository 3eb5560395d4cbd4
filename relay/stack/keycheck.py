"""The keys file, checked before a stack starts. Standard library only:
``python3 -m relay.stack.keycheck FILE`` is how start.sh refuses a bad file before it
installs anything."""

from __future__ import annotations

import sys
from pathlib import Path

from relay.keys import KeysFile, read_keys

HINT = ("Add your PagerDuty Events API v2 integration keys, one a line (or try "
        "./start.sh --demo)")
EXAMPLE = "pd_routing_keys.example.txt"


def check(path: Path) -> tuple[KeysFile, list[str]]:
    """The file's keys, and every problem with it (a hint when it holds no key)."""
    found = read_keys(path)
    problems = list(found.problems)
    if not path.exists() and (path.parent / EXAMPLE).exists():
        problems.append(f"Start from the example: cp {path.parent / EXAMPLE} {path} && "
                        f"chmod 600 {path}")
    if problems and not found.keys:
        problems.append(HINT)
    return found, problems


def main(argv: list[str]) -> int:
    _, problems = check(Path(argv[0]))
    for problem in problems:
        print(f"pd-relay: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
