"""The ``pd-relay`` subcommands, each a module with ``add_parser(sub)`` and
``command(settings, args)`` (relay/cli.py assembles them): ``ingress`` serves HTTP,
``operations`` answers the operator (status, check, forget-key), ``deadletters`` and
``sendtest`` do what their names say. The checks every process runs before it starts
are in relay/startup.py (shared with the worker's own command, ``worker/command.py``)."""
