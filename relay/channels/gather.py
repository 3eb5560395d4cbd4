"""Gatherings: notices to one channel kept for a digest (``relay.channels.digest``)
instead of being sent one by one: while the channel is muted (group ``muted:<intervals>``),
during its digest period (``digest``), or while its breaker is open (``breaker``).

A gathering is a hash (``Names.gathering``: its version, when it opened and is due, the
notices' accepted times, counts by severity and state) and a list of its first
``LINES_KEPT`` lines (``Names.gathered``); it is due at its score in ``Names.gatherings_due``.
However many notices it stands for, it takes at most ~``GATHERING_BYTES`` of Redis:
counts, not notices, beyond the lines. Each change is one Lua script doing a bounded amount
of work (at most ``LINES_KEPT`` lines a call: relay.channels.gatherlua).

When it is due, ``take_due`` moves it atomically into ``Names.digests_taken`` as a digest
(its id unique per channel: the channel's digest count and the time it opened); the
dispatcher then makes the digest's RQ job and forgets it. A crash between is made good by
the next dispatcher (``taken``), and RQ refuses the second job of an id. A gathering that
is due but empty closes silently: one opened empty (``first``) only keeps a channel quiet
for a period. One opened with ``again_ms`` opens again, empty, when its digest is taken:
a storm keeps gathering, and the channel gets at most one message a period.

A dispatcher that dies after parking a notice and before finishing its outbox entry parks
it again when the next one takes the entry over: ``mark`` (the notice and channel) is kept
in ``Names.gathering_marks`` until the entry is done (``unmark``), and a second park of the
same mark changes nothing (it answers as the first did).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from relay.channels.digest import LINE_FIELD_BYTES, LINE_SUMMARY_BYTES, LINES_KEPT, Digest, Line
from relay.channels.gatherlua import PARK, POSTPONE, TAKE
from relay.channels.notice import STATES, Notice
from relay.names import Names
from relay.severity import LEVELS

log = logging.getLogger(__name__)
VERSION = 1  # of a gathering's hash and of a taken digest's record
SEP = "\x1f"  # between channel and group in ``Names.gatherings_due``
LINE_BYTES = LINE_SUMMARY_BYTES + 3 * LINE_FIELD_BYTES + 200  # a Line's JSON, at most
GATHERING_BYTES = LINES_KEPT * LINE_BYTES + 1024  # the lines, the hash, the due entry
KINDS = (*LEVELS, "other")  # severities counted (anything else counts as "other")
STATE_NAMES = (*STATES.values(), "maintenance", "other")
LATER_MS = 3_600_000  # a gathering this release cannot read is looked at again that late
SKIPS = 10  # take_due skips at most this many unreadable gatherings per one of its limit
OTHER = "!"  # TAKE's answer for a gathering of another version
OPEN_READ = 1_000  # open gatherings read at most to show them (/metrics, status)

def reason_of(group: str) -> str:
    """A digest's reason (``relay.channels.digest.REASONS``) from its gathering's group."""
    return group.split(":", 1)[0]


class Gatherings:
    def __init__(self, client: redis.Redis, names: Names,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.names = names
        self.clock = clock
        self._park: Any = client.register_script(PARK)
        self._take: Any = client.register_script(TAKE)
        self._postpone: Any = client.register_script(POSTPONE)
        self.unreadable = 0  # gatherings of another release skipped (take_due)

    def park(self, channel: str, group: str, item: Notice | Digest, due_ms: int,
             mark: str = "") -> bool:
        """Add ``item`` (one notice, or a whole digest: its counts add, its lines up to
        ``LINES_KEPT``) to the gathering (``channel``, ``group``), opening it due at
        ``due_ms`` when none is open; an open one's due is pulled earlier if ``due_ms`` is.
        ``mark`` (e.g. the notice's id): a second park of it adds nothing. True (added)."""
        return self._call(channel, group, item, due_ms, "park", 0, mark)

    def first(self, channel: str, group: str, notice: Notice, due_ms: int, again_ms: int,
              mark: str = "") -> bool:
        """``digest_first: immediate``: add ``notice`` to the open gathering and return
        True; when none is open, open an EMPTY one due at ``due_ms`` (opening again,
        empty, ``again_ms`` after each digest taken from it) and return False: the caller
        sends the notice at once."""
        return self._call(channel, group, notice, due_ms, "first", again_ms, mark)

    def _call(self, channel: str, group: str, item: Notice | Digest, due_ms: int, mode: str,
              again_ms: int, mark: str) -> bool:
        n = self.names
        if isinstance(item, Notice):
            total, since, until, test = 1, item.accepted_ms, item.accepted_ms, item.test
            counts = {f"s:{kind(item.severity)}": 1, f"t:{state(item.state)}": 1}
            lines = [json.dumps(Line.of(item).to_json(), separators=(",", ":"))]
        else:
            total, since, until, test = item.total, item.since_ms, item.until_ms, item.test
            counts = {}
            for name, count in item.by_severity.items():
                counts[f"s:{kind(name)}"] = counts.get(f"s:{kind(name)}", 0) + count
            for name, count in item.by_state.items():
                counts[f"t:{state(name)}"] = counts.get(f"t:{state(name)}", 0) + count
            lines = [json.dumps(line.to_json(), separators=(",", ":"))
                     for line in item.lines[:LINES_KEPT]]
        pairs = [part for name, count in counts.items() if count for part in (name, count)]
        found = int(self._park(
            keys=[n.gathering(channel, group), n.gathered(channel, group), n.gatherings_due,
                  n.gathering_marks],
            args=[f"{channel}{SEP}{group}", int(due_ms), mode, int(again_ms), int(total),
                  int(since), int(until), int(bool(test)), LINES_KEPT, VERSION,
                  self._now_ms(), mark, len(pairs) // 2, *pairs, *lines]))
        if found < 0:
            raise ValueError(f"the gathering {group} of channel {channel} is of another "
                             "version: this release cannot add to it")
        return found == 1

    def unmark(self) -> None:
        """Forget the marks: the outbox entries they came from are done."""
        self.client.delete(self.names.gathering_marks)

    def due(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """(channel, group) of up to ``limit`` gatherings due at ``now_ms``, soonest first.
        A member of another form (a later release's) is looked at again in an hour."""
        return self._due(now_ms, limit)[0]

    def _due(self, now_ms: int, limit: int) -> tuple[list[tuple[str, str]], int]:
        found = self.client.zrangebyscore(self.names.gatherings_due, "-inf", now_ms,
                                          start=0, num=limit)
        odd = {str(member): now_ms + LATER_MS for member in found if SEP not in str(member)}
        if odd:
            self.client.zadd(self.names.gatherings_due, odd, xx=True)
            self._unreadable(len(odd))
        return [tuple(str(member).split(SEP, 1)) for member in found  # type: ignore[misc]
                if SEP in str(member)], len(odd)

    def take_due(self, now_ms: int, limit: int,
                 hold: Callable[[str, str], int | None] | None = None) -> list[Digest]:
        """Take up to ``limit`` due gatherings (each atomically) into the taken digests and
        return those digests (an empty one closes, giving none). ``hold(channel, group)``,
        when given, may return a later due ms instead (still muted): the gathering waits.
        Gatherings this release cannot read (a later release's) are skipped, counted
        (``unreadable``) and looked at again in an hour: they take no round's room (at
        most ``SKIPS`` x ``limit`` of them a call)."""
        taken = []
        done = skipped = 0
        while done < limit and skipped < SKIPS * limit:
            found, odd = self._due(now_ms, limit - done)
            skipped += odd
            if not found and not odd:
                break
            for channel, group in found:
                later = hold(channel, group) if hold is not None else None
                if later is not None and later > now_ms:
                    self.postpone(channel, group, later)
                    done += 1
                    continue
                digest_id = self.take(channel, group, now_ms)
                if digest_id == OTHER:
                    skipped += 1
                    self._unreadable(1)
                    continue
                done += 1
                if digest_id:
                    taken.append((channel, digest_id))
        found_taken = {(digest.channel, digest.id): digest for digest in self.taken()}
        return [found_taken[made] for made in taken if made in found_taken]

    def take(self, channel: str, group: str, now_ms: int) -> str:
        """Take one gathering if it is due; its digest's id ('' when none was taken,
        ``OTHER`` when it is of another version: looked at again in an hour)."""
        n = self.names
        return str(self._take(
            keys=[n.gathering(channel, group), n.gathered(channel, group), n.gatherings_due,
                  n.digests_taken, n.channel_stats],
            args=[f"{channel}{SEP}{group}", int(now_ms), channel, group, VERSION]) or "")

    def postpone(self, channel: str, group: str, due_ms: int) -> bool:
        n = self.names
        return bool(self._postpone(keys=[n.gathering(channel, group), n.gatherings_due],
                                   args=[f"{channel}{SEP}{group}", int(due_ms)]))

    def taken(self) -> list[Digest]:
        """The digests taken and not yet made jobs (``forget`` them once made). One that
        cannot be read is logged and forgotten."""
        found = []
        raw: dict[str, str] = self.client.hgetall(self.names.digests_taken)  # type: ignore[assignment]
        for field, record in raw.items():
            try:
                found.append(digest_of(json.loads(record)))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("a taken digest could not be read, it is dropped: %s: %s",
                          type(exc).__name__, exc)
                self.client.hdel(self.names.digests_taken, field)
        return found

    def forget(self, digests: Iterable[Digest]) -> None:
        """The digests' jobs are made: forget them."""
        fields = [f"{digest.channel}{SEP}{digest.id}" for digest in digests]
        if fields:
            self.client.hdel(self.names.digests_taken, *fields)

    def _unreadable(self, count: int) -> None:
        self.unreadable += count
        log.warning("%d gathering(s) of another release skipped (looked at again in an "
                    "hour; %d so far)", count, self.unreadable)

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)


def open_gatherings(client: redis.Redis, names: Names,
                    limit: int = OPEN_READ) -> dict[str, dict[str, tuple[int, int]]]:
    """Per channel and reason (``reason_of``), the gatherings open and the notices they
    hold, waiting for a digest: of the first ``limit`` open (soonest due first), in two
    round trips whatever they hold."""
    members = client.zrange(names.gatherings_due, 0, max(0, limit - 1))
    pairs = [str(member).split(SEP, 1) for member in members if SEP in str(member)]
    with client.pipeline(transaction=False) as pipe:
        for channel, group in pairs:
            pipe.hget(names.gathering(channel, group), "total")
        totals = pipe.execute() if pairs else []
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for (channel, group), total in zip(pairs, totals, strict=True):
        rows = found.setdefault(channel, {})
        opened, held = rows.get(reason_of(group), (0, 0))
        rows[reason_of(group)] = (opened + 1, held + int(total or 0))
    return found


def digest_of(record: dict[str, Any]) -> Digest:
    """A taken digest's record (TAKE) as a Digest."""
    if record.get("v") != VERSION:
        raise ValueError(f"a taken digest of version {record.get('v')}")
    raw = record["fields"]
    fields = dict(zip(raw[::2], raw[1::2], strict=True)) if isinstance(raw, list) else {}
    lines = record["lines"] if isinstance(record["lines"], list) else []
    by_severity = {name[2:]: int(v) for name, v in fields.items() if name.startswith("s:")}
    by_state = {name[2:]: int(v) for name, v in fields.items() if name.startswith("t:")}
    return Digest(id=str(record["id"]), channel=str(record["channel"]),
                  reason=reason_of(str(record["group"])), since_ms=int(fields["since"]),
                  until_ms=int(fields["until"]), total=int(fields["total"]),
                  by_severity=by_severity, by_state=by_state,
                  lines=tuple(Line.from_json(json.loads(line)) for line in lines),
                  test=fields.get("test") == "1")


def kind(severity: str) -> str:
    return severity if severity in LEVELS else "other"


def state(name: str) -> str:
    return name if name in STATE_NAMES else "other"
