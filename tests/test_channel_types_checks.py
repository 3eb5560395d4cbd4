"""The channel types of issue 30: the routes file's checks of their fields, and no
secret of theirs left in Redis when a provider echoes a request back."""

from __future__ import annotations

import pytest

from relay.routes.channels import Channel
from tests import standins
from tests.test_channel_types import (
    APP_TOKEN,
    BOT_TOKEN,
    HOOK_ID,
    HOOK_TOKEN,
    NTFY_TOKEN,
    NTFY_TOPIC,
    SECRETS,
    TWILIO_SID,
    TWILIO_TOKEN,
    USER_KEY,
    no_secret,
    notice,
    stand_ins,  # noqa: F401 - a fixture
    start,
)


def test_the_new_types_are_checked_in_the_routes_file(tmp_path) -> None:
    from relay.routes.config import load

    routes = tmp_path / "routes.yml"
    routes.write_text(f"""
channels:
  - {{name: d, type: discord, url: "https://discord.com/api/webhooks/1/x"}}
  - {{name: p, type: pushover, token: {APP_TOKEN}, user: {USER_KEY}, emergency_expire_s: 20000}}
  - {{name: s, type: signal, account: "+4915112345678", to: ["+4915187654321",
      "group:aGVsbG8gd29ybGQgZ3JvdXA=", "rm -rf /"]}}
  - {{name: t, type: telegram, token: "1:x", chat: "not a chat"}}
  - {{name: n, type: ntfy, url: "https://ntfy.sh/"}}
  - {{name: m, type: sms, account: {TWILIO_SID}, token: x, to: ["5551234"]}}
""")
    with pytest.raises(Exception) as failed:
        load(routes, ("db",))
    said = str(failed.value)
    for where in ("channels[1].emergency_expire_s", "channels[2].to", "channels[3].chat",
                  "channels[4].url", "channels[5].to", "channels[5].sender"):
        assert where in said, (where, said)
    assert "channels[0]" not in said
    routes.write_text(f"""
channels:
  - {{name: p, type: pushover, token: {APP_TOKEN}, user: {USER_KEY}}}
  - {{name: s, type: signal, account: "+4915112345678", to: ["+4915187654321"]}}
  - {{name: m, type: sms, account: {TWILIO_SID}, token: x, service: "MG{'0' * 32}",
      to: ["+15551234567"]}}
""")
    channels = {c.name: c for c in load(routes, ("db",)).channels}
    assert channels["p"].url == "https://api.pushover.net/1/messages.json"
    assert channels["p"].per_minute == 30 and channels["s"].timeout_s == 60
    assert channels["s"].shown == "signal via signal-cli to 1 recipient(s)"
    assert channels["m"].shown == "sms via api.twilio.com to 1 recipient(s)"
    for channel in channels.values():
        no_secret(channel.shown + repr(channel))


def test_no_new_type_leaves_a_secret_in_redis_when_its_provider_echoes_it(
        stand_ins) -> None:  # noqa: F811 - the fixture
    """A provider that refuses and echoes the whole request (path, authorization, body)
    back: RQ's real worker runs the real courier, every key and value in Redis is then
    searched for every secret (promise 6)."""
    import fakeredis

    from relay.channels import jobs
    from relay.channels.notice import Notice as NoticeType
    from relay.channels.rqjobs import put_job, rq_queue
    from relay.channels.worker import ChannelWorker
    from relay.names import Names
    from relay.routes.config import RoutesFile
    from relay.settings import Settings
    from tests.test_channel_secrets import everything, read_failed

    def echo(request: standins.Request) -> standins.Answer:
        raise standins.Refusal((400, {}, {"path": request.path, "query": request.query,
                                          "headers": request.headers,
                                          "body": request.raw.decode()}))

    server = start(stand_ins, echo)
    url = server.url
    channels = (
        Channel("discord", "discord", url=f"{url}/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}",
                retries=0),
        Channel("telegram", "telegram", url=url, token=BOT_TOKEN, chat="1", retries=0),
        Channel("pushover", "pushover", url=f"{url}/1/messages.json", token=APP_TOKEN,
                user=USER_KEY, retries=0),
        Channel("ntfy", "ntfy", url=f"{url}/{NTFY_TOPIC}", token=NTFY_TOKEN, retries=0),
        Channel("sms", "sms", url=url, account=TWILIO_SID, token=TWILIO_TOKEN,
                sender="+15557654321", to=("+15550000001",), retries=0),
    )
    jobs_client = fakeredis.FakeRedis()
    client = fakeredis.FakeRedis(server=jobs_client.connection_pool.connection_kwargs["server"],
                                 decode_responses=True)
    names = Names("pdr")
    jobs.install(jobs.Courier(client, Settings(channel_retry_base_s=1, channel_retry_max_s=1),
                              RoutesFile(channels=channels)))
    try:
        for channel in channels:
            assert put_job(jobs_client, names, channel, NoticeType.from_json(
                notice().to_json()))
        worker = ChannelWorker([rq_queue(jobs_client, names, c.name) for c in channels],
                               connection=jobs_client, serializer="json")
        worker.work(burst=True, logging_level="ERROR")
    finally:
        jobs.install(None)  # type: ignore[arg-type]
    failed = read_failed(jobs_client, channels)
    assert set(failed) == {c.name for c in channels}, failed
    assert all("HTTP 400" in failed[c.name] or "refused" in failed[c.name]
               for c in channels), failed
    assert len(server.requests) == len(channels)  # each was echoed back
    stored = everything(jobs_client)
    assert b"Traceback" in stored and b"***" in stored
    for secret in SECRETS:
        assert secret.encode() not in stored, secret


def test_the_readmes_example_of_the_new_types_is_a_valid_routes_file(tmp_path) -> None:
    import re
    from pathlib import Path

    from relay.routes.config import load

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Discord, Pushover, Signal, Telegram, ntfy and SMS", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    env = {name: value for name, value in (
        ("PD_RELAY_SECRET_DISCORD_URL", "https://discord.com/api/webhooks/1/x"),
        ("PD_RELAY_SECRET_PUSHOVER_TOKEN", APP_TOKEN), ("PD_RELAY_SECRET_PUSHOVER_USER",
                                                        USER_KEY),
        ("PD_RELAY_SECRET_TELEGRAM_TOKEN", BOT_TOKEN), ("PD_RELAY_SECRET_NTFY_TOPIC",
                                                        NTFY_TOPIC),
        ("PD_RELAY_SECRET_NTFY_TOKEN", NTFY_TOKEN), ("PD_RELAY_SECRET_TWILIO_SID", TWILIO_SID),
        ("PD_RELAY_SECRET_TWILIO_TOKEN", TWILIO_TOKEN))}
    routes = tmp_path / "routes.yml"
    routes.write_text(block.group(1))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        channels = load(routes, ("db",)).channels
    assert sorted(c.type for c in channels) == ["discord", "ntfy", "pushover", "signal", "sms",
                                                "telegram"]
