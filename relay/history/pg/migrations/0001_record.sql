-- pd-relay's record of events (relay/history/pg/__init__.py). Version 1.
-- Partitions of events and steps are made a day at a time by the exporter
-- (events_YYYYMMDD, steps_YYYYMMDD, from 00:00 UTC) and dropped by retention.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE pd_relay.events (
    id           text        NOT NULL,  -- the event's id in the relay (16 hex digits)
    accepted_at  timestamptz NOT NULL,  -- its accepted step's time (the stream entry's)
    entry        text        NOT NULL,  -- the stream entry that held its accepted step
    dedup_key    text        NOT NULL,
    action       text,                  -- trigger, acknowledge, resolve; change events: change
    kind         text,                  -- alert or change (the PagerDuty endpoint)
    severity     text,                  -- payload.severity
    summary      text,                  -- payload.summary
    source       text,                  -- payload.source (the system affected)
    component    text,                  -- payload.component
    class        text,                  -- payload.class
    event_group  text,                  -- payload.group
    route        text,                  -- the routes file's rule that took it
    sender       text,                  -- the relay source (API key) that sent it
    adapter      text,                  -- alertmanager, grafana, ... ('' for the Events API)
    key_name     text,                  -- the routing key's name (never the key)
    slot         integer,               -- the key's slot when accepted (0: held back)
    client       text,                  -- the client's address
    node         text,                  -- the ingress node that took it
    held         text,                  -- how it was held back ('' when queued)
    state        text        NOT NULL,  -- relay.history.story.STATES
    updated_at   timestamptz NOT NULL,  -- its newest step's time
    payload      jsonb,                 -- the event as stored (no routing key)
    PRIMARY KEY (id, accepted_at)
) PARTITION BY RANGE (accepted_at);

CREATE INDEX events_accepted ON pd_relay.events (accepted_at DESC);
CREATE INDEX events_dedup_key ON pd_relay.events (dedup_key, accepted_at DESC);
CREATE INDEX events_sender ON pd_relay.events (sender, accepted_at DESC);
CREATE INDEX events_source ON pd_relay.events (source, accepted_at DESC);
CREATE INDEX events_route ON pd_relay.events (route, accepted_at DESC);
CREATE INDEX events_state ON pd_relay.events (state, accepted_at DESC);
CREATE INDEX events_severity ON pd_relay.events (severity, accepted_at DESC);
CREATE INDEX events_key_name ON pd_relay.events (key_name, accepted_at DESC);
CREATE INDEX events_summary ON pd_relay.events USING gin (summary gin_trgm_ops);

CREATE TABLE pd_relay.steps (
    entry        text        NOT NULL,  -- the stream entry's id, "<ms>-<seq>"
    n            integer     NOT NULL,  -- the step's place in its entry
    at           timestamptz NOT NULL,  -- the entry's time
    event_id     text        NOT NULL,
    dedup_key    text        NOT NULL,
    step         text        NOT NULL,  -- accepted, attempt, delivered, dead, coalesced, ...
    slot         integer,
    key_name     text,                  -- the slot's key by name
    detail       jsonb       NOT NULL,  -- the step's other fields, short names (story.READABLE);
                                        -- an accepted step's without its payload
    PRIMARY KEY (entry, n, at)
) PARTITION BY RANGE (at);

CREATE INDEX steps_event ON pd_relay.steps (event_id, at);
CREATE INDEX steps_dedup_key ON pd_relay.steps (dedup_key, at);
