"""Redis key names, built in one place under one prefix.

Routing keys never appear in key names: each key is named by ``keys.key_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.severity import LEVELS

# What the index (``Names.where``) says of an incident remembered in the held set
HELD = "-"

# A key's Redis names, in Lua: ``per_key(prefix, kind, kid)`` is what ``Names.per_key``
# returns for the same prefix. Scripts that read a key id from Redis (ENQUEUE: the key an
# incident is remembered on) name that key's queue, stats and incidents with it; a test
# holds the two to the same names (tests/test_enqueue_index.py).
PER_KEY = """
local function per_key(prefix, kind, kid) return prefix .. ':' .. kind .. ':' .. kid end
"""

# Events whose dedup_key starts with this get their outcome noted (``Names.outcome``) by
# the worker that finishes them: test events, whose sender waits to hear what happened.
NOTED_PREFIX = "pd-relay-send-test-"


@dataclass(frozen=True)
class Names:
    prefix: str = "pdr"

    def per_key(self, kind: str, kid: str) -> str:
        """A key's Redis name of a kind (queue, stats, incidents): ``<prefix>:<kind>:<kid>``,
        as Lua's ``PER_KEY`` builds it."""
        return f"{self.prefix}:{kind}:{kid}"

    def queue(self, kid: str) -> str:
        """List of accepted events as they arrived, oldest first: the key's worker sorts
        them into its ``lanes`` (storm mode) or, with storm mode off, takes them from here."""
        return self.per_key("queue", kid)

    def lanes(self, kid: str) -> tuple[str, ...]:
        """Lists of sorted events waiting for delivery, one per severity, most urgent
        first (``worker.lanes``); an empty string is a gap left where an event moved out."""
        return tuple(f"{self.prefix}:queue:{kid}:{level}" for level in LEVELS)

    def waiting(self, kid: str) -> tuple[str, ...]:
        """Every list of the key's waiting events, about in the order they leave: the lanes
        (gaps aside), then the arrival list."""
        return (*self.lanes(kid), self.queue(kid))

    def pending(self, kid: str) -> str:
        """Hash: per incident sorted into the lanes (a digest of its dedup_key), its lane,
        how many of its events are there, where its newest is, and its severity; and per
        lane (``#0``..``#3``) how many entries left it (``worker.lanes``)."""
        return f"{self.prefix}:pending:{kid}"

    def inflight(self, kid: str) -> str:
        """List holding the event being delivered; it is delivered first after a crash."""
        return f"{self.prefix}:inflight:{kid}"

    def incidents(self, kid: str) -> str:
        """Sorted set of incidents (``router.incident_id`` of each dedup_key) routed to this
        key, scored by the time of their last event (ms, Redis clock); a resolve, or
        ``RELAY_INCIDENT_TTL_S`` without events, forgets one."""
        return self.per_key("incidents", kid)

    def remembered(self, where: str) -> str:
        """The sorted set an incident the index places at ``where`` (a key id, or
        ``HELD``) is remembered in."""
        return self.held if where == HELD else self.incidents(where)

    @property
    def where(self) -> str:
        """Hash, the index of remembered incidents: incident -> the id of the key whose
        ``incidents`` set remembers it, or ``HELD``; kept in step with those sets (and
        forgotten with them), so that ENQUEUE finds an incident's key with one HGET."""
        return f"{self.prefix}:where"

    @property
    def queued_bytes(self) -> str:
        """String: the bytes every key's queues hold (the sum of the keys' stats
        ``bytes``), changed with them by every script that changes one (the total cap)."""
        return f"{self.prefix}:queued-bytes"

    def slots(self, digest: str) -> str:
        """Hash: key id -> its slot (place, from 1) in the keys file whose keys, in order,
        have this digest (relay/store.py); written by each ingress node at its first store."""
        return f"{self.prefix}:slots:{digest}"

    @property
    def upgrading(self) -> str:
        """Hash: how far the upgrade to stored formats version 3 went (``relay.formats``):
        the set whose incidents are being indexed and the rank reached."""
        return f"{self.prefix}:format:upgrade"

    @property
    def format(self) -> str:
        """String: the version of the stored formats (``relay.formats``); absent in a
        store written by v0.1.0 (version 1) or by no release yet."""
        return f"{self.prefix}:format"

    @property
    def decisions(self) -> str:
        """Hash of the ingress's decisions per route and source (``relay.tally``)."""
        return f"{self.prefix}:decisions"

    @property
    def maintenance(self) -> str:
        """Hash of the maintenance windows added at run time (``relay.routes.windows``)."""
        return f"{self.prefix}:maintenance"

    @property
    def held(self) -> str:
        """Sorted set of incidents whose trigger was held back (dropped by a route or
        suppressed by maintenance), scored like ``incidents``: their follow-ups are held
        too."""
        return f"{self.prefix}:held"

    @property
    def history(self) -> str:
        """Stream of every event's steps: accepted, attempts, delivered or dead
        (``relay.history``)."""
        return f"{self.prefix}:history"

    @property
    def history_ledger(self) -> str:
        """Sorted set: the bytes written to the history (member ``~``) and marks every
        so many bytes, by which it is trimmed to its cap (``relay.history.cap``)."""
        return f"{self.prefix}:history:ledger"

    @property
    def history_export(self) -> str:
        """Hash: the PostgreSQL exporter's figures (``relay.history.pg``): ``lost`` (entries
        trimmed from the stream before any exporter read them), ``exported`` (entries
        written), ``last`` (the newest exported entry's id) and ``at_ms`` (when)."""
        return f"{self.prefix}:history:export"

    @property
    def history_gone(self) -> str:
        """Set: entries a claim by an exporter found trimmed while another held them
        (Redis 7's XAUTOCLAIM drops them from the group): counted, exported or lost, by
        the exporter whose acknowledgement removes them (``relay.history.pg.exporter``)."""
        return f"{self.prefix}:history:gone"

    @property
    def history_group(self) -> str:
        """The consumer group of the history stream the exporters share (a group's name,
        not a key)."""
        return "pd-relay-export"

    @property
    def owners(self) -> str:
        """Hash: per incident remembered (``router.incident_id``), who opened it
        (``owners.owner_of``), forgotten with the incident (ENQUEUE, retention)."""
        return f"{self.prefix}:owners"

    @property
    def shed(self) -> str:
        """Hash: what the relay let go to keep room for pages, by kind (``incidents``
        remembered on keys, ``held`` incidents, and when Redis was full: ``history``
        entries, channel ``notices``)."""
        return f"{self.prefix}:shed"

    @property
    def outbox(self) -> str:
        """List of notices for the channels, oldest first: ``<slot>\\n<notice>\\n<event>``
        (``relay.channels.outbox``), appended by ENQUEUE with the event itself."""
        return f"{self.prefix}:outbox"

    @property
    def outbox_taken(self) -> str:
        """List of the notices the dispatcher took and has not yet made jobs of."""
        return f"{self.prefix}:outbox:taken"

    @property
    def channel_stats(self) -> str:
        """Hash: ``bytes`` the outbox holds, notices ``skipped`` when it was full, and
        per channel ``<name>:sent``, ``<name>:failed``, ``<name>:error``."""
        return f"{self.prefix}:channels"

    @property
    def dispatcher(self) -> str:
        """String: id of the one channel worker that turns notices into jobs, with a TTL."""
        return f"{self.prefix}:channels:dispatcher"

    @property
    def heard_order(self) -> str:
        """Sorted set: the incidents the channels remember (``heard``), by when they were
        last heard of, to forget the oldest past their bound (relay/channels/outbox.py)."""
        return f"{self.prefix}:heard-order"

    def heard(self, incident: str) -> str:
        """String: the channels that heard of the incident's trigger, and how severe it
        was (``channels severity``), kept while the incident is remembered."""
        return f"{self.prefix}:heard:{incident}"

    def channel_queue(self, channel: str) -> str:
        """The RQ queue of a channel's messages (RQ prefixes its own key names)."""
        return f"{self.prefix}-{channel}"

    @property
    def housekeeping_queue(self) -> str:
        """The RQ queue of the relay's housekeeping jobs (never a channel's: a colon)."""
        return f"{self.prefix}:housekeeping"

    def channel_window(self, channel: str) -> str:
        """Sorted set of a channel's send times in the current minute (ms, Redis clock)."""
        return f"{self.prefix}:channel:{channel}:window"

    def channel_throttle(self, channel: str) -> str:
        """Hash {limit, at}: the pace a channel's last 429 cut it to, and when."""
        return f"{self.prefix}:channel:{channel}:throttle"

    def channel_pause(self, channel: str) -> str:
        """String with a TTL: the channel asked to wait (429, Retry-After) until it lapses."""
        return f"{self.prefix}:channel:{channel}:pause"

    def gathering(self, channel: str, group: str) -> str:
        """Hash: one gathering of notices for a digest to ``channel`` (relay.channels.gather):
        why (``group``: ``digest``, ``muted:<intervals>``, ``breaker``, ``backlog``), since
        and due when, the counts by severity and state, its sequence number; with
        ``gathered`` its lines."""
        return f"{self.prefix}:channel:{channel}:gather:{group}"

    def gathered(self, channel: str, group: str) -> str:
        """List: the first lines (``relay.channels.digest.Line`` JSON) of a gathering."""
        return f"{self.prefix}:channel:{channel}:gather:{group}:lines"

    @property
    def gatherings_due(self) -> str:
        """Sorted set: ``<channel>\x1f<group>`` of each open gathering, by when its digest
        is due (ms)."""
        return f"{self.prefix}:channels:due"

    @property
    def gathering_marks(self) -> str:
        """Hash: the notices (``<channel>\x1f<notice id>``) the dispatcher parked in
        gatherings from the outbox entries it took and has not finished, and what it
        decided (1 parked, 0 sent): a crash's retry parks none twice."""
        return f"{self.prefix}:channels:gather-marks"

    @property
    def digests_taken(self) -> str:
        """Hash: digests taken from their gatherings (``<channel>\x1f<id>`` -> JSON record,
        ``relay.channels.gather``) and not yet made RQ jobs
        (a crash between is made good by the next dispatcher)."""
        return f"{self.prefix}:channels:digests"

    def breaker(self, channel: str) -> str:
        """Hash: ``channel``'s breaker (relay.channels.breaker, format ``VERSION``):
        state, since, the next probe's time and number, failures in a row, the window's
        sends and failures in fixed buckets, times opened, probes, messages held."""
        return f"{self.prefix}:channel:{channel}:breaker"

    @property
    def maintenance_told(self) -> str:
        """Hash: per maintenance window, the last of its events the channels were told of
        (added, started, ended, expired), so each is told once."""
        return f"{self.prefix}:channels:maintenance-told"

    @property
    def alarms(self) -> str:
        """Hash of the relay's own open alarms (``relay.housekeeping.selfcheck``):
        condition id -> where it went and since when."""
        return f"{self.prefix}:alarms"

    @property
    def alarms_pending(self) -> str:
        """Hash of conditions not yet held long enough to alarm: id -> first seen (s)."""
        return f"{self.prefix}:alarms:pending"

    def lease(self, kid: str) -> str:
        """String: id of the one worker allowed to deliver for this key, with a TTL."""
        return f"{self.prefix}:lease:{kid}"

    def window(self, kid: str) -> str:
        """Sorted set of send times (ms, Redis clock) in the current rate window."""
        return f"{self.prefix}:window:{kid}"

    def throttle(self, kid: str) -> str:
        """Hash {limit, at}: the send limit PagerDuty's last 429 cut this key to, and when."""
        return f"{self.prefix}:throttle:{kid}"

    def stats(self, kid: str) -> str:
        """Hash of counters and last error for this key; ``bytes``: what its queues hold
        (summed in ``queued_bytes``)."""
        return self.per_key("stats", kid)

    def recent(self, kid: str) -> str:
        """Sorted set of deliveries in the last 60 s, scored by time (ms, Redis clock)."""
        return f"{self.prefix}:recent:{kid}"

    def latency(self, kid: str) -> str:
        """Hash: delivery latency histogram (accepted to delivered), ms bucket -> count."""
        return f"{self.prefix}:latency:{kid}"

    def worker_share(self, worker_id: str) -> str:
        """String with a TTL: the share of the keys a worker process takes first
        (``pd-relay worker --prefer I/N``), so that a process holding a key of another's
        share gives it back once that one is alive (``worker.keeper``)."""
        return f"{self.prefix}:worker-share:{worker_id}"

    def workers(self, kid: str) -> str:
        """Sorted set of worker ids serving this key, scored by when their last heartbeat
        lapses (ms: its time plus the worker's lease TTL)."""
        return f"{self.prefix}:workers:{kid}"

    def outcome(self, dedup_key: str, action: str) -> str:
        """String: what became of an event whose dedup_key starts with ``NOTED_PREFIX``,
        kept for an hour (``pd-relay send-test`` waits for it)."""
        return f"{self.prefix}:probe:{dedup_key}:{action}"

    @property
    def wake(self) -> str:
        """Pub/sub channel: the ids of keys given new events (ENQUEUE publishes each
        touched key's id once per call), so that a worker serving many keys wakes that
        key's loop instead of polling every queue."""
        return f"{self.prefix}:wake"

    @property
    def known_keys(self) -> str:
        """Hash: key id -> masked key, of every key the relay served (to find leftovers of
        keys removed from the keys file)."""
        return f"{self.prefix}:keys"

    @property
    def heartbeats(self) -> str:
        """Hash: the checks added at run time (``pd-relay heartbeat add``): name -> JSON
        (``relay.heartbeats.store``, with its format's version)."""
        return f"{self.prefix}:hb:checks"

    def heartbeat(self, name: str) -> str:
        """Hash: a check's state (``relay.heartbeats.store``): state, last ping, expected
        and down times, outages; read and written by its scripts only."""
        return f"{self.prefix}:hb:state:{name}"

    def heartbeat_pings(self, name: str) -> str:
        """List: a check's last pings, newest first, capped (each with the first bytes of
        its body)."""
        return f"{self.prefix}:hb:pings:{name}"

    @property
    def heartbeat_named(self) -> str:
        """Set: the names something is kept for (a state, pings, a ping token), so the
        evaluation can find, a slice a round, those of checks gone from the routes file."""
        return f"{self.prefix}:hb:named"

    @property
    def heartbeat_gone(self) -> str:
        """Hash: name -> when (ms, Redis clock) the evaluation first found no check of a
        name something is kept for (``relay.heartbeats.sweep``: forgotten after a while)."""
        return f"{self.prefix}:hb:gone"

    @property
    def heartbeat_due(self) -> str:
        """Sorted set: check name -> when it must next be looked at (ms, Redis clock):
        its expected time, or its expected time + grace once late."""
        return f"{self.prefix}:hb:due"

    @property
    def heartbeat_pages(self) -> str:
        """List: the pages (triggers and resolves) the evaluation decided and the
        evaluator has not yet stored as events, oldest first."""
        return f"{self.prefix}:hb:pages"

    @property
    def heartbeat_tokens(self) -> str:
        """Hash: check name -> SHA-256 of its ping token (made by ``pd-relay heartbeat
        token``; the token itself is never stored)."""
        return f"{self.prefix}:hb:tokens"

    @property
    def heartbeat_lease(self) -> str:
        """String with a TTL: the id of the one process evaluating the checks."""
        return f"{self.prefix}:hb:lease"

    @property
    def heartbeat_clock(self) -> str:
        """String: when the last evaluation round ran (ms, Redis clock), to notice the
        relay's own downtime (every check then gets one grace from its return)."""
        return f"{self.prefix}:hb:clock"

    @property
    def heartbeat_ingress(self) -> str:
        """String with a TTL: set (Redis's time, ms) every few seconds by each ingress
        node able to take pings; absent or old, pings could not arrive (the relay's own
        downtime, as a lapsed ``heartbeat_clock``)."""
        return f"{self.prefix}:hb:ingress"

    @property
    def heartbeat_gap(self) -> str:
        """Hash: the relay's own downtime as the evaluation saw it (ms, Redis clock):
        ``since`` (no check goes down within one grace of it), ``at``, ``gap_ms`` and
        ``reason`` (evaluator, ingress, start) of the last gap, ``open`` while the
        ingress's mark is missing."""
        return f"{self.prefix}:hb:gap"

    @property
    def dead(self) -> str:
        """Hash of dead letters: id -> JSON record."""
        return f"{self.prefix}:dead"

    @property
    def dead_index(self) -> str:
        """Sorted set of dead-letter ids scored by the time they died (ms)."""
        return f"{self.prefix}:dead:index"

    def ui_session(self, hashed: str) -> str:
        """String with a TTL: a dashboard session (``relay.ui.sessions``), named by the
        SHA-256 of its id (the id is a credential: only the browser's cookie holds it)."""
        return f"{self.prefix}:ui:session:{hashed}"

    def ui_sessions(self, operator: str) -> str:
        """Sorted set with a TTL: an operator's live sessions (their ids' hashes) by when
        they began, to drop the oldest past ``RELAY_UI_SESSIONS_MAX``."""
        return f"{self.prefix}:ui:sessions:{operator}"
