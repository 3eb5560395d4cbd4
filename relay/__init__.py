"""pd-relay: a queue-buffered relay from monitoring tools to PagerDuty Events API v2."""

__version__ = "0.1.0"
