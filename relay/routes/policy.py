"""The routes file in force in one process: its gate (who may send) and router (where
events go), replaced whole by ``reload`` (SIGHUP). A file that does not check keeps the
one in force, and says why."""

from __future__ import annotations

import logging

from relay.auth import Gate
from relay.errors import ConfigError
from relay.router import Router
from relay.routes.config import RoutesFile, Window, load
from relay.settings import Settings

log = logging.getLogger(__name__)


class Policy:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.routes = RoutesFile()
        self.added: tuple[Window, ...] = ()  # maintenance windows added at run time
        self.current = (Router(settings.routing_keys, settings.draining_keys, settings.key_names),
                        Gate((), settings.allow_anonymous))
        if settings.routes_file is not None:
            self.install(load(settings.routes_file, settings.key_names))
        if settings.allow_anonymous:
            log.warning("open relay: anyone who can reach it may send events "
                        "(RELAY_ALLOW_ANONYMOUS=true)")

    def install(self, routes: RoutesFile) -> None:
        s = self.settings
        # one assignment: a request under way keeps the router and gate it started with
        self.current = (Router(s.routing_keys, s.draining_keys, s.key_names, routes.routes,
                               routes.maintenance + self.added, routes.channels,
                               routes.time_intervals),
                        Gate(routes.sources, s.allow_anonymous, routes.routes, s.key_names))
        self.routes = routes

    def set_windows(self, added: tuple[Window, ...]) -> None:
        """Apply the maintenance windows added at run time (``relay.routes.windows``)."""
        self.added = added
        self.install(self.routes)
        log.info("maintenance windows added at run time in force: %s",
                 ", ".join(w.name for w in added) or "none")

    def reload(self) -> bool:
        """Read the routes file again; keep the one in force if the new one is bad."""
        path = self.settings.routes_file
        if path is None:
            log.info("no routes file to reload (RELAY_ROUTES_FILE)")
            return False
        try:
            routes = load(path, self.settings.key_names)
        except ConfigError as exc:
            log.error("routes file %s not reloaded, the one in force stays: %s", path, exc)
            return False
        self.install(routes)
        log.info("routes file %s reloaded: %d source(s), %d route(s), %d maintenance "
                 "window(s)", path, len(routes.sources), len(routes.routes),
                 len(routes.maintenance))
        return True
