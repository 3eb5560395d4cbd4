"""pd-relay workers: deliver one routing key's queue to PagerDuty, in order, within its rate."""
