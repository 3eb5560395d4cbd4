"""Heartbeats: the dead man's switch (issue 28). A check expects a ping every ``period``
(or at each time of a ``cron`` schedule in its ``tz``) and pages when none came by the
expected time plus ``grace``, when a ``start`` gets no success within ``grace``, or when a
``fail`` arrives; its next success resolves the page.

The family, lowest room first:

    model.py      the facts every part shares: Check, CheckState, Ping, Page, the states
    config.py     the routes file's ``heartbeats:`` section, checked by path
    schedule.py   when the next ping is expected (period; cron with cronsim, in the tz)
    store.py      the checks' state in Redis: ping (one script call), pause, resume, add,
                  remove, tokens; the evaluation round and the pages' outbox (Lua:
                  lua.py, rounds.py; codec.py: a run-time check's and a page's JSON)
    catalog.py    every check by name: the routes file's and the run-time ones
    evaluator.py  the loop that runs the rounds (one process at a time, under a lease, on
                  Redis's clock) and hands each page to a sender
    pages.py      a page made an event on the ordinary path (stored, ordered, limited)
    commands.py   ``pd-relay heartbeat add|list|pause|resume|remove|token``

The ingress (``/ping/...``, the Watchdog in the adapters) and the views (status, metrics,
dashboard) sit above this family and use ``store.Heartbeats``.
"""
