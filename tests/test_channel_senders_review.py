"""Review of the issue 30 senders (sms, signal): who has a message, as remembered in the
RQ job (``progress``), must be who really has it, whatever the provider answered."""

from __future__ import annotations

import pytest
import requests
from rq.job import Job

from relay.channels import messages, senders
from relay.errors import Rejected
from relay.routes.channels import Channel
from tests import standins
from tests.test_channel_signal import job  # noqa: F401 - a fixture
from tests.test_channel_types import (
    TWILIO_SID,
    TWILIO_TOKEN,
    notice,
    stand_ins,  # noqa: F401 - a fixture
    start,
)

TO = ("+15550000001", "+15550000002", "+15550000003")


def test_sms_refused_for_everyone_is_sent_to_everyone_when_requeued(
        stand_ins, job: Job) -> None:  # noqa: F811
    """Twilio refusing every recipient (here the token was wrong: 401, code 20003) sends
    the message to nobody: it fails, and once the token is right, `channels requeue`
    runs the same job (its meta kept) and must send it to all three."""
    server = start(stand_ins, standins.twilio(TWILIO_SID, TWILIO_TOKEN))
    sms = Channel("s", "sms", url=server.url, account=TWILIO_SID, token="wrong-token",
                  service="MG" + "0" * 32, to=TO)
    body = messages.message(sms, notice())
    with pytest.raises(Rejected, match="refused every recipient"):
        senders.send(sms, body, requests.Session())
    fixed = Channel("s", "sms", url=server.url, account=TWILIO_SID, token=TWILIO_TOKEN,
                    service="MG" + "0" * 32, to=TO)
    assert senders.send(fixed, body, requests.Session()) == "sent to 3 recipient(s)"
    assert [r.form()["To"] for r in server.taken() if r.basic()[1] == TWILIO_TOKEN] == \
        list(TO)

