"""Acknowledging what the exporter committed (``ACK``: and counting it in
``Names.history_export``), and telling which entries read back empty (trimmed while
held) the record holds all the same (``committed``)."""

from __future__ import annotations

import psycopg

from relay.history.loss import LOSS
from relay.history.pg import SCHEMA

# Acknowledge a batch once committed, and count it.
# KEYS[1] the stream, KEYS[2] the export hash; ARGV[1] the group, ARGV[2] now (ms),
# ARGV[3] how many written ids follow, then those ids, then the ids read back empty.
# Returns {exported, lost}: the ids whose acknowledgement this call made.
ACK = LOSS + """
local written, exported, lost, last = tonumber(ARGV[3]), 0, 0, nil
for i = 4, #ARGV do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    if i < 4 + written then
      exported = exported + 1
      if not last or id_less(last, ARGV[i]) then last = ARGV[i] end
    else
      lost = lost + 1
    end
  end
end
if exported > 0 then
  redis.call('HINCRBY', KEYS[2], 'exported', exported)
  local before = redis.call('HGET', KEYS[2], 'last')
  if not before or id_less(before, last) then redis.call('HSET', KEYS[2], 'last', last) end
  redis.call('HSET', KEYS[2], 'at_ms', ARGV[2])
end
if lost > 0 then redis.call('HINCRBY', KEYS[2], 'lost', lost) end
return {exported, lost}
"""


def committed(conn: psycopg.Connection, entries: list[str]) -> set[str]:
    """Which of ``entries`` the record holds steps of (an exporter committed them, then
    died before acknowledging)."""
    times = [int(entry.split("-")[0]) for entry in entries]
    found = conn.execute(
        f"SELECT DISTINCT entry FROM {SCHEMA}.steps WHERE entry = ANY(%s) "
        "AND at BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
        (entries, min(times) - 1, max(times) + 1)).fetchall()
    return {row[0] for row in found}
