"""A PagerDuty Events API v2 stand-in for tests, drills and ``--demo`` runs (loopback only).

Written from PagerDuty's documented contract (``shared/pagerduty-events-v2.md``) and
sharing no code with the relay, so that it can catch where the relay and PagerDuty
disagree: ``rules`` checks events as PagerDuty does, ``pagerduty`` throttles, keeps open
incidents, counts ordering violations, injects faults and serves HTTP.
"""
