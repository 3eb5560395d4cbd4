"""The relay's own housekeeping, as RQ jobs on the channel worker's scheduler.

    scheduler thread (relay/channels/loops.py) --every period--> RQ queue ``pdr-housekeeping``
        retention   (hourly)   old dead letters, idle incident memories, RQ's registries
        self_check  (30 s)     the relay's own alarms, raised and resolved (``selfcheck``)

Each period's job has one id (``<name>-<period>``), so however many schedulers run, a
period's job is made once; and each job is idempotent, so running one twice harms
nothing.
"""
