"""A worker process serving many keys (worker.fleet, worker.keeper) with fakeredis[lua], a
scripted PagerDuty and a clock the tests move: no sleeping, no threads, no network."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import pytest

from relay.keys import key_id
from relay.names import Names
from relay.settings import Settings
from tests.conftest import make_key, trigger
from tests.test_worker import ScriptedPagerDuty, queue, stats
from worker.fleet import Fleet
from worker.keeper import SLICE
from worker.served import in_share
from worker.wake import listen

NAMES = Names()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_fleet(settings: Settings, fake: fakeredis.FakeRedis, pd: Any,
               keys: Any = None, worker_id: str = "p1", clock: Clock | None = None,
               prefer: tuple[int, int] | None = None) -> Fleet:
    clock = clock or Clock()
    return Fleet(settings, settings.routing_keys if keys is None else keys, fake,
                 pagerduty=pd, clock=clock, wall=clock, sleep=lambda s: None,
                 worker_id=worker_id, prefer=prefer)


def serve_woken(fleet: Fleet) -> list[str]:
    """Run the loop of every woken key once (what their threads would do)."""
    woken = [kid for kid, served in fleet.served.items() if served.wake.is_set()]
    for kid in woken:
        fleet.served[kid].wake.clear()
        fleet.serve(kid)
    return woken


def holder(fake: fakeredis.FakeRedis, key: str) -> str | None:
    return fake.get(NAMES.lease(key_id(key)))


def test_one_process_delivers_every_keys_events_in_order_with_its_own_key(
        settings, fake) -> None:
    for n, key in enumerate(settings.routing_keys):
        queue(fake, key, *[trigger(dedup_key=f"k{n}-{i}") for i in range(3)])
    pd = ScriptedPagerDuty()
    fleet = make_fleet(settings, fake, pd)
    fleet.tick()
    assert sorted(serve_woken(fleet)) == sorted(key_id(k) for k in settings.routing_keys)
    for n, key in enumerate(settings.routing_keys):
        mine = [b["dedup_key"] for _, b in pd.sent if b["routing_key"] == key]
        assert mine == [f"k{n}-{i}" for i in range(3)]
        assert stats(fake, key)["delivered"] == "3"
        assert holder(fake, key) == "p1"  # the lease is per key, held by the process


def test_a_key_with_nothing_waiting_parks_without_blocking_on_redis(settings, fake) -> None:
    fleet = make_fleet(settings, fake, ScriptedPagerDuty())
    calls: list[str] = []
    real = fake.execute_command

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]).upper())
        return real(*args, **kwargs)

    fake.execute_command = spy  # type: ignore[method-assign]
    fleet.tick()
    for kid in fleet.served:
        fleet.serve(kid)  # returns at once: nothing waits
    assert "BLMOVE" not in calls and "BRPOPLPUSH" not in calls


def test_a_tick_is_one_round_trip_of_one_call_per_slice_of_keys(settings, fake) -> None:
    keys = [make_key() for _ in range(SLICE * 2 + 1)]
    fleet = make_fleet(settings, fake, ScriptedPagerDuty(), keys=keys)
    pipelines: list[int] = []
    real = fake.pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        def counted(*a: Any, **k: Any) -> Any:
            pipelines.append(len(pipe.command_stack))
            return execute(*a, **k)

        pipe.execute = counted
        return pipe

    fake.pipeline = counting  # type: ignore[method-assign]
    fleet.tick()
    fleet.tick()
    assert pipelines == [3, 3]  # 201 keys: 3 KEEP calls a tick, one round trip
    assert all(holder(fake, k) == "p1" for k in keys)
    assert all(fake.zscore(NAMES.workers(key_id(k)), "p1") for k in keys)


def test_events_found_by_the_tick_wake_their_key_only(settings, fake) -> None:
    fleet = make_fleet(settings, fake, ScriptedPagerDuty())
    fleet.tick()
    serve_woken(fleet)  # the first prune pass
    key = settings.routing_keys[1]
    queue(fake, key, trigger(dedup_key="late"))
    fleet.tick()
    assert serve_woken(fleet) == [key_id(key)]


def test_a_wake_message_wakes_the_named_key(settings, fake) -> None:
    fleet = make_fleet(settings, fake, ScriptedPagerDuty())
    kid = key_id(settings.routing_keys[2])
    fleet.wake(kid)
    fleet.wake("not-a-key")  # ignored
    assert [k for k, s in fleet.served.items() if s.wake.is_set()] == [kid]


def test_a_lease_held_by_another_process_is_left_alone(settings, fake) -> None:
    key = settings.routing_keys[0]
    fake.set(NAMES.lease(key_id(key)), "other", px=60_000)
    queue(fake, key, trigger(dedup_key="theirs"))
    pd = ScriptedPagerDuty()
    fleet = make_fleet(settings, fake, pd)
    fleet.tick()
    serve_woken(fleet)
    fleet.serve(key_id(key))  # even woken, it sends nothing without the lease
    assert pd.sent == []
    assert holder(fake, key) == "other"


def test_a_standby_takes_a_key_of_the_others_share_only_after_it_stayed_free(
        settings, fake) -> None:
    keys = [make_key() for _ in range(6)]
    while len({in_share(key_id(k), (1, 2)) for k in keys}) < 2:  # both shares (random keys)
        keys.append(make_key())
    clock = Clock()
    first = make_fleet(settings, fake, ScriptedPagerDuty(), keys, "p1", clock, (1, 2))
    second = make_fleet(settings, fake, ScriptedPagerDuty(), keys, "p2", clock, (2, 2))
    first.tick()
    ones = {k for k in keys if in_share(key_id(k), (1, 2))}
    assert 0 < len(ones) < len(keys)
    assert {k for k in keys if holder(fake, k) == "p1"} == ones  # its share only
    clock.now += second.grace_s / 2
    second.tick()
    assert {k for k in keys if holder(fake, k) == "p2"} == set(keys) - ones
    for key in ones:  # the first process dies: its leases lapse, a TTL after its last tick
        fake.delete(NAMES.lease(key_id(key)))
    clock.now += settings.lease_ttl_s
    second.tick()
    assert not any(holder(fake, k) == "p2" for k in ones)  # free for a moment only
    clock.now += second.grace_s
    second.tick()
    assert all(holder(fake, k) == "p2" for k in keys)


def test_a_lost_lease_stops_the_keys_sends(settings, fake, caplog) -> None:
    key = settings.routing_keys[0]
    pd = ScriptedPagerDuty()
    fleet = make_fleet(settings, fake, pd)
    fleet.tick()
    fake.set(NAMES.lease(key_id(key)), "other", px=60_000)  # taken over meanwhile
    fleet.tick()
    assert f"lost the lease of 1 key(s) (another process holds it now): " \
        f"{settings.name_of(key)}" in caplog.text
    queue(fake, key, trigger(dedup_key="x"))
    fleet.serve(key_id(key))
    assert pd.sent == []


def test_keys_added_are_served_and_keys_removed_are_given_up(settings, fake) -> None:
    keys = list(settings.routing_keys)
    pd = ScriptedPagerDuty()
    fleet = make_fleet(settings, fake, pd, keys=keys[:2])
    fleet.tick()
    assert holder(fake, keys[0]) == "p1" and holder(fake, keys[2]) is None
    fleet.set_keys(keys[1:])
    assert holder(fake, keys[0]) is None  # released at once, for another to take
    assert fake.zscore(NAMES.workers(key_id(keys[0])), "p1") is None
    queue(fake, keys[2], trigger(dedup_key="new"))
    fleet.tick()
    serve_woken(fleet)
    assert [b["dedup_key"] for _, b in pd.sent] == ["new"]


def test_shares_split_the_keys_by_id(settings) -> None:
    kids = [key_id(make_key()) for _ in range(300)]
    parts = [[k for k in kids if in_share(k, (i, 3))] for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(kids)
    assert all(60 < len(part) < 140 for part in parts)


@pytest.mark.parametrize("mode", ["off", "always"])
def test_storm_lanes_are_served_and_found_waiting(settings, fake, mode) -> None:
    settings = replace(settings, storm_mode=mode)
    key = settings.routing_keys[0]
    queue(fake, key, *[trigger(dedup_key=f"s{i}") for i in range(4)])
    pd = ScriptedPagerDuty()
    fleet = make_fleet(settings, fake, pd)
    fleet.tick()
    serve_woken(fleet)
    assert [b["dedup_key"] for _, b in pd.sent] == [f"s{i}" for i in range(4)]


# ---- the command: which keys, and SIGHUP --------------------------------------------

@pytest.fixture
def keys_file(tmp_path, monkeypatch) -> Any:
    listed = [make_key(), make_key(), make_key()]
    path = tmp_path / "keys.txt"
    path.write_text(f"{listed[0]} alpha\n{listed[1]} beta\n{listed[2]}\n")
    monkeypatch.setenv("RELAY_KEYS_FILE", str(path))
    monkeypatch.setenv("RELAY_LEASE_TTL_S", "15")
    return path, listed


def args_of(*argv: str) -> Any:
    from relay.cli import _parser
    return _parser().parse_args(["worker", *argv])


def test_keys_all_a_list_of_names_or_a_shard(keys_file, capsys) -> None:
    from worker.command import chosen_keys

    _, listed = keys_file
    settings = Settings.from_env()
    assert chosen_keys(settings, args_of("--keys", "all")) == listed
    assert chosen_keys(settings, args_of("--keys", "beta,key-3")) == [listed[1], listed[2]]
    assert chosen_keys(settings, args_of("--key-id", key_id(listed[2]))) == [listed[2]]
    shards = [chosen_keys(settings, args_of("--shard", f"{i}/2")) for i in (1, 2)]
    assert sorted(shards[0] + shards[1]) == sorted(listed)  # type: ignore[operator]
    assert chosen_keys(settings, args_of("--keys", "beta,nope")) is None
    err = capsys.readouterr().err
    assert "'nope'" in err and not any(key in err for key in listed)


@pytest.mark.parametrize("bad", ["0/2", "3/2", "x", "1/2/3"])
def test_a_share_must_be_i_of_n(bad) -> None:
    with pytest.raises(SystemExit):
        args_of("--shard", bad)


def test_sighup_serves_keys_added_and_gives_up_keys_removed(keys_file, fake, monkeypatch,
                                                           caplog) -> None:
    from worker import command

    path, listed = keys_file
    monkeypatch.setattr("relay.startup.connect", lambda settings: fake)
    settings = Settings.from_env()
    fleet = make_fleet(settings, fake, ScriptedPagerDuty(), keys=listed[:2])
    fleet.tick()
    added = make_key()
    path.write_text(f"{listed[1]} beta\n{added} gamma\n")
    monkeypatch.setenv("RELAY_RATE_PER_MIN", "60")
    assert command.reread(fleet, args_of("--keys", "all"))
    assert set(fleet.served) == {key_id(listed[1]), key_id(added)}
    assert holder(fake, listed[0]) is None
    assert "RELAY_RATE_PER_MIN" in caplog.text or "rate_per_min" in caplog.text
    fleet.tick()
    assert holder(fake, added) == "p1"


def test_sighup_keeps_the_keys_when_a_removed_one_has_events_left(keys_file, fake,
                                                                  monkeypatch) -> None:
    from worker import command

    path, listed = keys_file
    monkeypatch.setattr("relay.startup.connect", lambda settings: fake)
    settings = Settings.from_env()
    command.removed_keys_left_something(settings)  # the keys recorded, as at start
    fleet = make_fleet(settings, fake, ScriptedPagerDuty(), keys=listed)
    queue(fake, listed[0], trigger(dedup_key="left"))
    path.write_text(f"{listed[1]} beta\n")
    assert not command.reread(fleet, args_of("--keys", "all"))
    assert key_id(listed[0]) in fleet.served


def test_the_shared_session_reads_proxies_and_ca_bundle_once_not_per_send(
        settings, monkeypatch) -> None:
    """requests reads the environment on every request (a loop over os.environ: 14% of a
    send's CPU, measured); the session takes it once, at start, and keeps honouring it."""
    from worker.pagerduty import shared_pagerduty

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/tmp/bundle.pem")
    settings = replace(settings, pd_url="https://events.pagerduty.com")
    session = shared_pagerduty(settings).session
    assert session.trust_env is False
    assert session.proxies.get("https") == "http://127.0.0.1:9"
    assert session.verify == "/tmp/bundle.pem"
    monkeypatch.setenv("NO_PROXY", "events.pagerduty.com")
    assert "https" not in shared_pagerduty(settings).session.proxies


def test_the_listener_wakes_a_key_named_on_the_wake_channel(settings, fake) -> None:
    """ENQUEUE publishes each key id it gave events on ``Names.wake``; the listener
    (a thread of the process) wakes that key, and every key once when it subscribes."""
    import threading

    from relay.stack.processes import wait_until

    fleet = make_fleet(settings, fake, ScriptedPagerDuty())
    thread = threading.Thread(target=listen, args=(fleet,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: all(s.wake.is_set() for s in fleet.served.values()), 5,
                   "every key woken once subscribed")
        for served in fleet.served.values():
            served.wake.clear()
        kid = key_id(settings.routing_keys[1])

        def published() -> bool:
            fake.publish(NAMES.wake, kid)
            return fleet.served[kid].wake.is_set()

        wait_until(published, 5, "the named key woken", every=0.05)
        assert [k for k, s in fleet.served.items() if s.wake.is_set()] == [kid]
    finally:
        fleet.stop()
        thread.join(timeout=10)


def test_a_routing_key_given_to_keys_is_refused_and_never_echoed(keys_file, capsys) -> None:
    from worker.command import chosen_keys

    _, listed = keys_file
    assert chosen_keys(Settings.from_env(), args_of("--keys", f"alpha,{listed[1]}")) is None
    err = capsys.readouterr().err
    assert listed[1] not in err and "ps" in err
    unknown = make_key()  # not in the file, but a key all the same: masked
    assert chosen_keys(Settings.from_env(), args_of("--keys", unknown)) is None
    assert unknown not in capsys.readouterr().err


def test_keys_removed_while_redis_is_unreachable_leave_the_process_running(
        settings, fake, caplog) -> None:
    """A SIGHUP that gives up a key while Redis is unreachable (a restart, a blip) must
    not stop the process serving every other key: the removed key's lease lapses by
    itself within the TTL. (Every worker process gets the SIGHUP at once.)"""
    import redis

    keys = list(settings.routing_keys)
    fleet = make_fleet(settings, fake, ScriptedPagerDuty(), keys=keys)
    fleet.tick()
    release = fleet.keeper.release
    reloads: list[int] = []

    def unreachable(kids: Any) -> None:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    def reload() -> None:
        reloads.append(1)
        if len(reloads) == 1:
            fleet.keeper.release = unreachable  # type: ignore[method-assign]
            fleet.set_keys(keys[1:])
        else:
            fleet.keeper.release = release  # type: ignore[method-assign]
            fleet.stop()

    fleet.run(reload)  # returns once stopped; it raised out of the loop before
    assert len(reloads) == 2  # the loop went on after the failed give-up
    assert set(fleet.served) == {key_id(k) for k in keys[1:]}
    assert "could not give up the leases of 1 removed key(s)" in caplog.text


def test_keys_added_by_sighup_reuse_the_shared_sessions_connections(settings, fake,
                                                                    caplog) -> None:
    """The HTTP session every key shares keeps a connection per key sending at once, also
    for keys added at run time: a process started with one key and given 30 more by
    SIGHUP opens no new connection per send when they all send together (it kept 10
    and opened, then dropped, the others on every send, a warning each time)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    senders = 30
    barrier = threading.Barrier(senders, timeout=20)
    connections: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            connections.append(1)
            super().setup()

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            barrier.wait()  # every sender's request is under way at once
            body = b'{"status":"success"}'
            self.send_response(202)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # every sender's connect at once (the default backlog: 5)
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = replace(settings, pd_url=f"http://127.0.0.1:{server.server_port}",
                           connect_timeout_s=5, read_timeout_s=25, lease_ttl_s=40)
        fleet = Fleet(settings, settings.routing_keys[:1], fake, worker_id="p1")
        fleet.set_keys([make_key() for _ in range(senders)])  # SIGHUP: keys added

        def round_of_sends() -> None:
            threads = [threading.Thread(target=fleet.pagerduty.send, args=("alert", b"{}"))
                       for _ in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)

        round_of_sends()
        assert len(connections) == senders
        round_of_sends()
        assert len(connections) == senders  # every connection reused
        assert "Connection pool is full" not in caplog.text
    finally:
        server.shutdown()
        server.server_close()


def test_a_key_loop_that_fails_stops_the_process_with_a_failure_status(
        keys_file, fake, monkeypatch, caplog) -> None:
    """A defect in one key's loop stops the process (its supervisor restarts it): it must
    say it failed, by its exit status, so that any supervisor restarting on failure does
    (it returned 0, as for a stop asked by SIGTERM)."""
    import signal

    from worker import command

    _, listed = keys_file
    monkeypatch.setattr("relay.startup.connect", lambda settings: fake)
    monkeypatch.setattr(command, "connect", lambda settings: fake)

    def broken(self: Any) -> bool:
        raise RuntimeError("a defect")

    monkeypatch.setattr("worker.delivery.Worker.step", broken)
    queue(fake, listed[0], trigger(dedup_key="x"))  # the tick wakes its key
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT,
                                                  signal.SIGHUP)}
    try:
        status = command.command(Settings.from_env(), args_of("--keys", "all"))
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert "the delivery loop failed" in caplog.text
    assert status != 0


def test_a_key_added_by_sighup_is_scrubbed_from_the_logs_as_the_keys_at_start(
        keys_file, fake, monkeypatch) -> None:
    """The logs mask every routing key in full (promise 6: a reply quoting the request
    body, a message naming one). A worker process reads keys added to the keys file on
    SIGHUP without restarting: its scrubber must know them too (it knew only the keys of
    its start, and wrote an added key in full)."""
    import logging

    from relay.keys import mask
    from relay.logs import configure
    from worker import command

    path, listed = keys_file
    monkeypatch.setattr("relay.startup.connect", lambda settings: fake)
    settings = Settings.from_env()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("worker", "INFO", "text", settings.routing_keys)  # as at start
        handler = root.handlers[0]
        fleet = make_fleet(settings, fake, ScriptedPagerDuty(), keys=listed)
        added = make_key()
        path.write_text(path.read_text() + f"{added} delta\n")
        assert command.reread(fleet, args_of("--keys", "all"))
        assert key_id(added) in fleet.served
        for key in (listed[0], added):
            record = logging.LogRecord("worker.delivery", logging.ERROR, __file__, 1,
                                       "key blocked: PagerDuty answered 403: %s",
                                       (f'{{"routing_key":"{key}"}}',), None)
            handler.filter(record)
            assert key not in record.getMessage() and mask(key) in record.getMessage()
    finally:
        for extra in root.handlers:
            if extra not in handlers:
                extra.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_process_hands_the_keys_of_anothers_share_back_once_it_is_alive_again(
        settings, fake) -> None:
    """After a restart the keys go back to the process whose share they are (a rolling
    restart would otherwise leave every key on one process, and the load with it): an
    idle key of another's share is given back once that process ticks again; a key whose
    loop is delivering is kept until it is done."""
    keys = [make_key() for _ in range(6)]
    while len({in_share(key_id(k), (1, 2)) for k in keys}) < 2:  # both shares (random keys)
        keys.append(make_key())
    twos = {k for k in keys if in_share(key_id(k), (2, 2))}
    clock = Clock()
    first = make_fleet(settings, fake, ScriptedPagerDuty(), keys, "p1", clock, (1, 2))
    first.tick()
    clock.now += first.grace_s
    first.tick()  # the second process is not running: the first took every key
    assert all(holder(fake, k) == "p1" for k in keys)
    busy = next(iter(twos))
    first.served[key_id(busy)].lock.acquire()  # its loop is delivering
    second = make_fleet(settings, fake, ScriptedPagerDuty(), keys, "p2", clock, (2, 2))
    second.tick()  # back: alive on every key, its share held by the first still
    assert not any(holder(fake, k) == "p2" for k in keys)
    first.tick()  # sees it: gives its share's idle keys back
    assert {k for k in keys if holder(fake, k) is None} == twos - {busy}
    second.tick()
    assert {k for k in keys if holder(fake, k) == "p2"} == twos - {busy}
    first.served[key_id(busy)].lock.release()
    first.tick()
    second.tick()
    assert {k for k in keys if holder(fake, k) == "p2"} == twos
    assert {k for k in keys if holder(fake, k) == "p1"} == set(keys) - twos
    clock.now += 10 * first.grace_s
    first.tick()
    second.tick()  # and it stays so
    assert {k for k in keys if holder(fake, k) == "p2"} == twos
