"""Channels: chat rooms, webhooks and mailboxes that hear of events besides PagerDuty.

    ingress ──ENQUEUE──▶ outbox (Redis list, capped; same command as the event's queue)
                           │  dispatcher (one per stack, under a lease: ``outbox``)
                           ▼
                         RQ queue per channel (``pdr-NAME``, JSON jobs, id = notice + channel)
                           │  ``pd-relay channel-worker`` (RQ worker + scheduler: ``worker``)
                           ▼
                         courier (``jobs``): rate, pause, send (``senders``), retry or fail

A notice (``notice``) is what a channel is told of one event; ``messages`` writes it in
each channel type's form. None of this touches the PagerDuty lanes: a channel's outage
slows no page, and a PagerDuty outage slows no channel.
"""
