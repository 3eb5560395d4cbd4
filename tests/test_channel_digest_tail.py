"""Every type's digest counts every notice: the lines it shows plus the tail's N
("and N more") are the digest's total, whatever it cuts to fit its limits
(``relay.channels.digest.outline`` defines what a digest says)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.channels import messages
from relay.channels.digest import LINES_KEPT, Digest, Line
from relay.routes.channel_types import PER_MINUTE
from relay.routes.channels import Channel

TOKEN = re.compile(r"zq(\d+)zq")
TAIL = re.compile(r"and (\d+) more")


def counted(kind: str, found: dict) -> tuple[int, int]:
    """(lines shown, the tail's N) of a digest's message, whatever its fields."""
    text = found["text"] if kind == "webhook" else json.dumps(found)  # (+ the digest's JSON)
    shown = len(set(TOKEN.findall(text)))
    tails = {int(n) for n in TAIL.findall(text)}
    assert len(tails) <= 1, tails  # one tail (an email's text and HTML say the same)
    return shown, tails.pop() if tails else 0


@pytest.mark.parametrize("kind", sorted(PER_MINUTE))
@settings(max_examples=60, deadline=None)
@given(kept=st.integers(0, LINES_KEPT),
       extra=st.integers(0, 5000), widths=st.lists(st.integers(0, 140), min_size=1),
       mark=st.sampled_from(["x", "_", "é", "<"]))
def test_shown_lines_and_the_tail_count_every_notice(kind: str, kept: int, extra: int,
                                                     widths: list[int], mark: str) -> None:
    lines = tuple(Line(state="triggered", severity="warning",
                       summary=f"zq{i}zq " + mark * widths[i % len(widths)],
                       source="s" * (widths[i % len(widths)] // 2))
                  for i in range(kept))
    total = max(1, kept + extra)
    digest = Digest(id="dg1-1", channel="c", reason="muted", since_ms=0, until_ms=60_000,
                    total=total, by_severity={"warning": total}, by_state={"triggered": total},
                    lines=lines)
    channel = Channel("c", kind, url="https://chat.example/hook", chat="1",
                      to=("+15550000001",), sender="relay@example.com")
    found = messages.digest_message(channel, digest)
    shown, more = counted(kind, found)
    if kind == "sms" and not shown:  # one segment: the headline alone, which counts them
        assert found["text"].startswith(f"{total} notice")
        return
    assert shown + more == total, (shown, more, total)
