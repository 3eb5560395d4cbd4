"""Running pd-relay stacks: redis-server, nginx, ingress nodes, workers, the simulator.

``processes`` starts and stops single processes on loopback; ``render`` writes the nginx
configuration and the redis-server command line, once for every kind of stack (start.sh
calls it too); ``loopback`` is the whole stack the end-to-end tests, ``scripts/bench``
and ``scripts/drill`` build and break.
"""
