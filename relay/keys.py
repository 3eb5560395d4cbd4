"""Routing keys: reading the keys file, masking, ids and incident-to-key choice.

Routing keys are secrets. Outside the HTTP body sent to PagerDuty they appear only
masked (``mask``) or as a one-way id (``key_id``), which names their Redis keys.

The keys file holds one key a line, ``KEY [NAME] [drain]``. The name (default ``key-N``,
N counting keys from 1) is what status, metrics, logs and routes call the key. ``drain``
marks a key being retired: it takes no new incidents, while its queued events and the
follow-ups of its open incidents are still delivered on it.
"""

from __future__ import annotations

import functools
import grp
import hashlib
import os
import pwd
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_RE = re.compile(r"^[A-Za-z0-9]{32}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
ALPHABET = string.ascii_letters + string.digits


def new_key(first: str = "") -> str:
    """A random 32-character key in the shape of an integration key (``first`` = "R" for
    a ruleset key): for demo stacks, tests, benchmarks and drills."""
    rest = "".join(secrets.choice(ALPHABET) for _ in range(32 - len(first)))
    key = first + rest
    return key if first or not key.startswith("R") else "P" + key[1:]


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


@dataclass(frozen=True)
class KeysFile:
    keys: tuple[str, ...] = ()  # every key, in file order
    draining: frozenset[str] = frozenset()  # keys marked ``drain``
    problems: list[str] = field(default_factory=list)
    names: tuple[str, ...] = ()  # each key's name, in the same order


def parse_keys(lines: Iterable[str], source: str = "keys file") -> KeysFile:
    """One 32-character key a line, then optionally its name and ``drain``; blanks and
    # comments allowed. Every problem is named with its line."""
    keys: list[str] = []
    names: list[str] = []
    draining: set[str] = set()
    problems: list[str] = []
    seen: dict[str, int] = {}
    named: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        line, rest = words[0], words[1:]
        drain = rest[-1:] == ["drain"]
        name = rest[0] if rest[:1] and not (drain and len(rest) == 1) else f"key-{len(keys) + 1}"
        if not KEY_RE.match(line):
            problems.append(
                f"{source} line {number}: {mask(line)} is not a routing key "
                f"(want 32 letters or digits, got {len(line)} characters)"
            )
        elif line in seen:
            problems.append(f"{source} line {number}: {mask(line)} repeats line {seen[line]}")
        elif len(rest) > 1 + drain:
            problems.append(f"{source} line {number}: after the key, only a name and 'drain' "
                            f"may follow (got {len(rest)} words)")
        elif not NAME_RE.match(name) or KEY_RE.match(name) or name == "drain":
            shown = mask(name) if KEY_RE.match(name) else repr(name[:40])
            problems.append(f"{source} line {number}: {shown} is not a key name (want up to 40 "
                            "letters, digits, '.', '_' or '-', not a 32-character key)")
        elif name in named:
            problems.append(f"{source} line {number}: the name {name!r} is taken by line "
                            f"{named[name]}")
        else:
            seen[line] = number
            named[name] = number
            keys.append(line)
            names.append(name)
            if drain:
                draining.add(line)
    if keys and len(draining) == len(keys):
        problems.append(f"{source}: every key is marked drain; new incidents need one that is not")
    return KeysFile(tuple(keys), frozenset(draining), problems, tuple(names))


def read_keys(path: Path) -> KeysFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return KeysFile(problems=[f"RELAY_KEYS_FILE: cannot read {path}: {exc}"])
    found = parse_keys(text.splitlines(), str(path))
    if not found.keys and not found.problems:
        found.problems.append(f"RELAY_KEYS_FILE: {path} holds no routing key")
    found.problems.extend(exposed("RELAY_KEYS_FILE", path))
    return found


def exposed(setting: str, path: Path) -> list[str]:
    """A secrets file other users may read or change: what to run about it."""
    try:
        found = path.stat()
    except OSError:
        return []
    mode = found.st_mode & 0o777
    if mode & 0o077 and not granted_to_me(found):
        return [f"{setting}: other users may read {path} (mode {mode:o}): it holds secrets; "
                f"run chmod 600 {path}"]
    return []


def granted_to_me(found: os.stat_result) -> bool:
    """Whether a file only root may change lets its group read it, and that group is this
    process's alone: the stack started as root hands its service user the keys so
    (``relay.stack.account.private_copy``), and no other user may read them."""
    if found.st_uid != 0 or found.st_mode & 0o037 or found.st_gid != os.getegid() \
            or os.geteuid() == 0:  # root reads its own files: no one was granted anything
        return False
    return group_of_one(found.st_gid, pwd.getpwuid(os.geteuid()).pw_name)


def group_of_one(gid: int, name: str) -> bool:
    """Whether user ``name`` is the only account in group ``gid`` (as a member, or by its
    primary group): what that group may read, only that user reads."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return False
    others = {user.pw_name for user in pwd.getpwall() if user.pw_gid == gid}
    return (members | others) <= {name}


def choose_key(keys: Sequence[str], incident: str) -> str:
    """Pick the key for an incident by rendezvous hashing of its dedup_key: the key
    whose SHA-256 of ``key_id(key) NUL incident`` is greatest.

    Every event of one incident lands on one key; adding or removing a key moves
    only the incidents of that key. The choice costs one hash per key of the pool (each
    key's hash state, fed its id, is kept: about 0.3 us a key); the function, and so
    every choice, is the one earlier releases made (a forgotten incident's follow-ups
    go where its trigger went).
    """
    if not keys:
        raise ValueError("no routing key to choose from")
    data = incident.encode()
    best, chosen = b"", keys[0]
    for key in keys:
        weight = _seeded(key).copy()
        weight.update(data)
        digest = weight.digest()
        if digest > best:
            best, chosen = digest, key
    return chosen


@functools.lru_cache(maxsize=8192)
def _seeded(key: str) -> Any:
    """SHA-256 fed ``key_id(key)`` and NUL: each choice copies it (``choose_key``)."""
    return hashlib.sha256(f"{key_id(key)}\0".encode())
