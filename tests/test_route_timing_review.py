"""Review of issue 30's muted routes: what the sender is told and what is counted when a
muted route with channels suppresses its PagerDuty event."""

from __future__ import annotations

from relay.router import Router, outcome, why
from relay.routes import commands
from relay.routes.channels import Channel, Use
from relay.routes.config import Route as Rule
from relay.routes.timing import Timing
from tests.test_route_timing import ALWAYS, NOW, event


def test_a_muted_route_with_channels_says_it_suppressed_the_event() -> None:
    """Its channels still hear of it, but PagerDuty does not get it because the route is
    muted: the answer and the count say so (they said "sent to channels only ... by
    route muted:pay", as for a route with channels and no keys)."""
    rule = Rule("pay", keys=("day",), timing=Timing(mute=("always",)),
                channels=(Use("chat"),))
    quiet = Router(["K-day"], names=["day"], rules=[rule], intervals=[ALWAYS],
                   channels=[Channel("chat", "slack", url="https://hooks.example/x")])
    route = quiet.route("alert", event("error"), "", {}, NOW)
    assert not isinstance(route, str)
    assert (route.slot, route.rule, route.channels) == (0, "muted:pay", ("chat",))
    assert outcome(route) == "suppressed"
    assert why(route).startswith("suppressed: route pay is muted now")
    assert commands._verdict(None, route) == (  # type: ignore[arg-type]  # routes test
        "route pay: suppressed (not sent), its acknowledge and resolve too")
