"""The operator's cockpit: the history API (``api``) and the pages at /ui (``pages``),
behind the operators of the routes file (``access``)."""
