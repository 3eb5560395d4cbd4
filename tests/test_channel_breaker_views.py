"""What operators see of a channel's breaker: ``pd-relay channels status`` (its state,
since when, the next probe, what it holds), /metrics (open, opened, probes, held), the
dashboard's channels, and the self-check's ``channel:NAME`` alarm ("breaker open since"),
raised while open and resolved when it closes."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest

from relay.channels import commands
from relay.channels.breaker import Breakers
from relay.channels.rqjobs import rq_queue
from relay.housekeeping import selfcheck
from relay.names import Names
from relay.routes.channels import Breaker
from tests.test_housekeeping import setup  # noqa: F401 - the fixture

NAMES = Names("pdr")
QUICK = Breaker(failures=2, cooldown_s=60)


def open_breaker(fake, name: str = "chat") -> tuple[Breakers, int]:
    breakers = Breakers(fake, NAMES)
    for _ in range(2):
        breakers.record(name, QUICK, "failed")
    breakers.ask(name, QUICK)  # a message held meanwhile
    return breakers, breakers.now_ms()


def test_channels_status_shows_each_breaker_and_what_it_holds(fake, capsys) -> None:
    jobs = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs.get("server"))
    _, opened = open_breaker(fake)
    fake.hset(NAMES.channel_stats, mapping={"chat:held": 2, "chat:failed_forgotten": 3})
    settings = {"chat": QUICK, "mail": Breaker(failures=0), "hook": Breaker()}
    assert commands.status(fake, jobs, NAMES, ["chat", "mail", "hook"], False, settings) == 0
    out = capsys.readouterr().out
    header, chat, mail, hook = out.splitlines()[:4]
    assert "HELD" in header and "BREAKER" in header
    assert chat.split()[5:7] == ["2", "open"] and mail.split()[5:7] == ["0", "off"]
    assert hook.split()[5:7] == ["0", "closed"]
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(opened / 1000))
    probe = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(opened / 1000 + 60))
    assert f"chat: breaker open since {since} UTC, next probe at {probe} UTC; 2 message(s) " \
        "held" in out
    commands.status(fake, jobs, NAMES, ["chat"], True, settings)
    row = json.loads(capsys.readouterr().out)["channels"][0]
    assert row["breaker"]["state"] == "open" and row["breaker"]["opened"] == 1
    assert (row["held"], row["held_total"], row["failed_forgotten"]) == (2, 2, 3)


def test_metrics_show_each_breaker(client, fake) -> None:
    from tests.test_channels import UNIX

    breakers, _ = open_breaker(fake)
    fake.hset(NAMES.channel_stats, mapping={"chat:error": "HTTP 500", "chat:held": 4,
                                            "ok:sent": 3})
    breakers.record("ok", QUICK, "ok")
    text = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    for line in ('pd_relay_channel_breaker_open{channel="chat"} 1.0',
                 'pd_relay_channel_breaker_open{channel="ok"} 0.0',
                 'pd_relay_channel_breaker_opened_total{channel="chat"} 1.0',
                 'pd_relay_channel_breaker_probes_total{channel="chat"} 0.0',
                 'pd_relay_channel_held_total{channel="chat"} 4.0'):
        assert line in text, line


def test_the_self_alert_says_open_since_and_resolves_when_it_closes(
        setup, fake) -> None:  # noqa: F811 - the fixture
    settings, routes = setup
    jobs = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs.get("server"))
    queues = [rq_queue(jobs, NAMES, "chat")]
    assert [c.id for c in selfcheck.conditions(fake, NAMES, settings, routes, queues)
            if c.id.startswith("channel:")] == []
    clock = [time.time()]
    breakers = Breakers(fake, NAMES, lambda: clock[0])
    for _ in range(5):
        breakers.record("chat", Breaker(), "failed")
    found = [c for c in selfcheck.conditions(fake, NAMES, settings, routes, queues)
             if c.id == "channel:chat"]
    assert len(found) == 1 and "breaker open since" in found[0].summary
    assert found[0].channel == "chat"  # told to the other channels, not to itself
    alarms = selfcheck.Alarms(fake, NAMES, settings, routes)
    assert alarms.check(found) == (["channel:chat"], [])
    clock[0] += 300
    probe = breakers.ask("chat", Breaker())
    assert breakers.record("chat", Breaker(), "ok", probe.probe)[0] == "closed"
    now = selfcheck.conditions(fake, NAMES, settings, routes, queues)
    assert "channel:chat" not in [c.id for c in now]
    assert alarms.check([c for c in now if c.channel]) == ([], ["channel:chat"])


@pytest.mark.parametrize("state", ["open", "closed"])
def test_the_dashboard_shows_the_breaker(state: str, fake) -> None:
    from relay.ui.overview import breaker_line

    if state == "open":
        breakers, _ = open_breaker(fake)
        row = commands.read(fake, fakeredis.FakeRedis(), NAMES, ["chat"],
                            {"chat": QUICK})["channels"][0]
        assert breaker_line(row["breaker"]).startswith("breaker open since ")
    else:
        row = commands.read(fake, fakeredis.FakeRedis(), NAMES, ["chat"])["channels"][0]
        assert row["breaker"]["state"] == "closed"


def test_send_test_says_held_while_the_breaker_is_open() -> None:
    from rq.job import JobStatus

    from relay.channels.probe import verdict

    class Done:
        def __init__(self, value: str) -> None:
            self.value = value

        def get_status(self, refresh: bool = True) -> JobStatus:
            return JobStatus.FINISHED

        def return_value(self) -> str:
            return self.value

    assert verdict(Done("ok")) == "sent: ok"  # type: ignore[arg-type]
    held = verdict(Done("held: breaker open"))  # type: ignore[arg-type]
    assert held is not None and held.startswith("HELD: the channel's breaker is open")
