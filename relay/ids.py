"""Unpredictable ids: the dedup_keys the relay mints and each event's id.

A sender sees many of them (every 202 carries a minted dedup_key), so the next must not
be predictable from those: with it, a sender could act on an incident another opens.
``random`` (MT19937) gives its state away after 624 outputs; ``secrets`` per id reads
``os.urandom``, a system call that hands the GIL over, which under load costs the
ingress more than the rest of an event's checks (docs/BENCHMARKS.md). So ids are a keyed
BLAKE2b of a counter (a pseudo-random function in counter mode): unpredictable without
the key, which ``secrets`` makes once per process (and again in a forked child).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets

_key = secrets.token_bytes(32)
_counter = itertools.count()  # next() is atomic under the GIL: threads never share an id


def _new_key() -> None:
    global _key, _counter
    _key, _counter = secrets.token_bytes(32), itertools.count()


os.register_at_fork(after_in_child=_new_key)


def token(nbytes: int) -> str:
    """``nbytes`` unpredictable bytes, in hex."""
    block = next(_counter).to_bytes(16, "big")
    return hashlib.blake2b(block, key=_key, digest_size=nbytes).hexdigest()
