"""Queue caps: a request that would overfill a key's queue, or every queue, is refused
whole (503, Retry-After, the key named) and stores nothing; delivery makes room again."""

from __future__ import annotations

from dataclasses import replace

import fakeredis

from relay.app import create_app
from relay.keys import key_id
from relay.names import Names
from relay.router import Route
from relay.settings import Settings
from relay.status import read_status
from relay.store import EventStore, Full, Record
from tests.conftest import UNIX, trigger
from tests.test_worker import ScriptedPagerDuty, drain, make_worker

NAMES = Names()


def queue_length(fake: fakeredis.FakeRedis, key: str) -> int:
    return int(fake.llen(NAMES.queue(key_id(key))))


def queued_bytes(fake: fakeredis.FakeRedis, key: str) -> int:
    return int(fake.hget(NAMES.stats(key_id(key)), "bytes") or 0)


def on_key(key: str, dedup_key: str) -> dict[str, object]:
    return trigger(dedup_key=dedup_key, routing_key=key)


def test_a_request_over_the_event_cap_is_refused_whole_naming_the_key(settings, fake) -> None:
    first, second = settings.routing_keys[:2]
    client = create_app(replace(settings, queue_max_events=3), client=fake).test_client()
    for n in range(2):
        assert client.post("/v2/enqueue", json=on_key(first, f"ok-{n}")).status_code == 202
    reply = client.post("/v2/enqueue", json=[on_key(first, "late-a"), on_key(first, "late-b"),
                                             on_key(second, "elsewhere")])
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "30"
    assert reply.json["status"] == "queue full"
    assert "key key-1" in reply.json["errors"][0]
    assert "RELAY_QUEUE_MAX_EVENTS" in reply.json["errors"][0]
    assert first not in reply.get_data(as_text=True)
    assert queue_length(fake, first) == 2 and queue_length(fake, second) == 0  # nothing
    assert fake.zscore(NAMES.incidents(key_id(second)), "elsewhere") is None
    assert not any(fake.zscore(NAMES.incidents(key_id(k)), "late-a") for k in (first, second))
    # one more still fits; other keys take events as before
    assert client.post("/v2/enqueue", json=on_key(first, "fits")).status_code == 202
    assert client.post("/v2/enqueue", json=on_key(second, "other")).status_code == 202
    assert client.post("/v2/enqueue", json=on_key(first, "over")).status_code == 503
    metrics = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    assert 'pd_relay_requests_refused_total{reason="QueueFull"} 2.0' in metrics


def test_the_byte_cap_counts_what_is_queued_and_in_flight(settings, fake) -> None:
    key = settings.routing_keys[0]
    raw = Record("alert", dict(on_key(key, "x"), routing_key=None), 0).encode()
    capped = replace(settings, queue_max_mb=len(raw) * 3.5 / 2**20)
    client = create_app(capped, client=fake).test_client()
    answers = [client.post("/v2/enqueue", json=on_key(key, f"e{n}")).status_code
               for n in range(5)]
    assert answers == [202, 202, 202, 503, 503]
    stored = fake.lrange(NAMES.queue(key_id(key)), 0, -1)
    assert queued_bytes(fake, key) == sum(len(r.encode()) for r in stored)
    refused = client.post("/v2/enqueue", json=on_key(key, "e9"))
    assert "RELAY_QUEUE_MAX_MB" in refused.json["errors"][0]
    row = read_status(fake, NAMES, capped)[0]  # status and metrics show the bytes
    assert row["queued_bytes"] == queued_bytes(fake, key) and row["queued"] == 3
    metrics = client.get("/metrics", environ_base=UNIX).get_data(as_text=True)
    assert f'pd_relay_queued_bytes{{key="key-1"}} {float(row["queued_bytes"])}' in metrics

    worker = make_worker(capped, fake, ScriptedPagerDuty())  # delivery makes room
    drain(worker)
    assert queued_bytes(fake, key) == 0
    assert client.post("/v2/enqueue", json=on_key(key, "after")).status_code == 202


def test_the_total_cap_counts_every_keys_queue(settings, fake) -> None:
    keys = settings.routing_keys
    raw = Record("alert", dict(on_key(keys[0], "x"), routing_key=None), 0).encode()
    client = create_app(replace(settings, queues_max_mb=len(raw) * 2.5 / 2**20),
                        client=fake).test_client()
    assert client.post("/v2/enqueue", json=on_key(keys[0], "a")).status_code == 202
    assert client.post("/v2/enqueue", json=on_key(keys[1], "b")).status_code == 202
    reply = client.post("/v2/enqueue", json=on_key(keys[2], "c"))
    assert reply.status_code == 503
    assert "RELAY_QUEUES_MAX_MB" in reply.json["errors"][0]
    assert "key key-3" in reply.json["errors"][0]


def test_requests_sharing_a_command_are_taken_or_refused_each_whole(settings, fake) -> None:
    """Group commit puts several requests in one command: the one that would overfill
    a queue stores nothing, those before and after it are stored."""
    key = settings.routing_keys[0]
    store = EventStore(fake, NAMES, replace(settings, queue_max_events=3))
    slot = settings.routing_keys.index(key) + 1

    def request(*dedup_keys: str) -> list[tuple[Route, str, str, str, str]]:
        return [(Route(slot, dedup_key, "trigger", "routing-key"),
                 Record("alert", trigger(dedup_key=dedup_key), 0).encode(), "", "", "a")
                for dedup_key in dedup_keys]

    answers = store.enqueue([request("a", "b"), request("c", "d"), request("e")])
    assert answers == [slot, slot, Full(slot, total=False), Full(slot, total=False), slot]
    stored = [Record.decode(raw).event["dedup_key"]
              for raw in fake.lrange(NAMES.queue(key_id(key)), 0, -1)]
    assert stored == ["a", "b", "e"]
    remembered = set(fake.zrange(NAMES.incidents(key_id(key)), 0, -1))
    assert remembered == {"a", "b", "e"}


def test_settings_refuse_caps_smaller_than_one_request(tmp_path) -> None:
    from relay.errors import ConfigError
    from relay.keys import new_key

    path = tmp_path / "keys.txt"
    path.write_text(new_key() + "\n")
    try:
        Settings.from_env({"RELAY_KEYS_FILE": str(path), "RELAY_QUEUE_MAX_MB": "0.1"})
    except ConfigError as exc:
        assert "RELAY_QUEUE_MAX_MB=0.1" in str(exc)
    else:
        raise AssertionError("a cap smaller than one request was taken")


def test_the_event_cap_counts_events_the_worker_sorted_into_lanes(settings, fake) -> None:
    """Storm mode: what the worker moved from the arrival list into its lanes is still
    queued, and still counts against RELAY_QUEUE_MAX_EVENTS."""
    from worker.lanes import Lanes

    key = settings.routing_keys[0]
    capped = replace(settings, queue_max_events=3)
    client = create_app(capped, client=fake).test_client()
    for n in range(3):
        assert client.post("/v2/enqueue", json=on_key(key, f"ok-{n}")).status_code == 202
    Lanes(fake, NAMES, key_id(key), capped, "key-1").take(take=False)
    assert queue_length(fake, key) == 0 and read_status(fake, NAMES, capped)[0]["queued"] == 3
    assert client.post("/v2/enqueue", json=on_key(key, "over")).status_code == 503


def test_bytes_are_kept_while_events_wait_in_lanes(settings, fake) -> None:
    """FINISH resets a key's bytes once nothing waits: events in lanes still wait."""
    key = settings.routing_keys[0]
    client = create_app(settings, client=fake).test_client()
    for n in range(2):
        assert client.post("/v2/enqueue", json=on_key(key, f"b-{n}")).status_code == 202
    worker = make_worker(settings, fake, ScriptedPagerDuty())
    assert worker.lease.acquire()
    worker.step()  # sorts both into a lane, delivers the first
    [waiting] = fake.lrange(NAMES.lanes(key_id(key))[0], 0, -1)
    assert queued_bytes(fake, key) == len(waiting.encode())


def test_a_purge_makes_room_at_once_and_status_counts_no_gaps(settings, fake, monkeypatch,
                                                               capsys) -> None:
    """A purge leaves gaps in the arrival list (issue 24: bounded purges); the cap and
    status count the events, not the gaps, before the worker has passed them."""
    from relay import queues
    from relay.cli import _parser

    key = settings.routing_keys[0]
    limited = replace(settings, queue_max_events=3)
    client = create_app(limited, client=fake).test_client()
    for n in range(3):
        assert client.post("/v2/enqueue", json=on_key(key, f"junk-{n}")).status_code == 202
    assert client.post("/v2/enqueue", json=on_key(key, "page")).status_code == 503
    monkeypatch.setattr(queues, "connect", lambda _settings: fake)
    args = _parser().parse_args(["queue", "purge", "key-1", "--match", 'dedup_key=~"junk-[01]"',
                                 "--yes"])
    assert queues.command(limited, args) == 0 and "removed 2" in capsys.readouterr().out
    assert read_status(fake, NAMES, limited)[0]["queued"] == 1
    assert client.post("/v2/enqueue", json=on_key(key, "page")).status_code == 202
    assert client.post("/v2/enqueue", json=on_key(key, "page-2")).status_code == 202
    assert client.post("/v2/enqueue", json=on_key(key, "over")).status_code == 503
    assert read_status(fake, NAMES, limited)[0]["queued"] == 3
    worker = make_worker(limited, fake, ScriptedPagerDuty())
    drain(worker)
    assert [body["dedup_key"] for _, body in worker.pagerduty.sent] == [  # type: ignore[attr-defined]
        "junk-2", "page", "page-2"]
    assert read_status(fake, NAMES, limited)[0]["queued"] == 0
    assert fake.hget(NAMES.stats(key_id(key)), "laned") == "0"
