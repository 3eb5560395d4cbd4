"""Running pd-relay stacks: redis-server, nginx, ingress nodes, workers, the simulator.

``command`` is ``pd-relay stack up|down|status|reload|logs|relay`` (start.sh calls it);
``up`` checks and applies a configuration; ``native`` runs it under supervisord
(``supervisor``), changing a running one with ``rolling`` restarts and ``nginx`` drains;
``compose`` writes the docker compose override. All of them describe processes with
``model`` and render nginx and Redis with ``render``; ``options`` and ``record`` hold what
a stack is started with. ``loopback`` and ``processes`` build the stacks the end-to-end
tests, ``scripts/bench`` and ``scripts/drill`` start piece by piece and break.
"""
