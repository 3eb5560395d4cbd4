"""The history's record in PostgreSQL (``RELAY_HISTORY_DSN``): months of every event's
story, searched by index, while Redis keeps only what must be fast (the queues) and the
stream (``relay.history``) becomes the buffer between them.

- **Writing** (the exporter): reads the stream with the consumer group
  ``Names.history_group``, turns each entry into steps (``relay.history.entries``) and
  writes them, with their events, in batches, idempotently (a step is named by its entry
  id and place: ``ON CONFLICT DO NOTHING``), acknowledging entries only once their batch is
  committed. Delivery never waits for it: PostgreSQL down or slow, the stream holds the
  steps (within its caps); what the caps trim before any exporter read it is counted in
  ``Names.history_export`` (``lost``), never silently.
- **The schema** (``migrations/``, plain SQL applied in order by ``pd-relay history
  migrate``, recorded in ``pd_relay.migrations``): ``pd_relay.events`` (one row per event,
  from its accepted step and its payload; ``state`` its story's state as
  ``relay.history.story.Story.state`` says it) and ``pd_relay.steps`` (one row per step),
  both partitioned by day on their time, so that retention (``RELAY_HISTORY_DAYS``, 90 by
  default) drops whole partitions. Names and masks only: no routing key is ever stored
  (the stored event has none; keys are named by ``Settings.name_of``).
- **Reading** (``stories.Finder``): the API, the dashboard and ``trace`` read PostgreSQL
  for what was exported (``reader``) and the stream for its tail (``tail``: the entries
  from the export group's frontier on, which may not be committed yet), showing a step
  both hold once, so a person sees no gap and no duplicate.

``SCHEMA_VERSION`` is the newest migration this release knows: a database migrated by a
later release (a higher version) is refused at start with the reason, never written.
"""

from __future__ import annotations

SCHEMA = "pd_relay"  # every table of the record lives in this PostgreSQL schema
SCHEMA_VERSION = 1  # the newest file in migrations/
