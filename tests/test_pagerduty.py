"""PagerDuty's answers mapped to outcomes: delivered, retry later, rejected for good."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from relay.errors import KeyBlocked, Rejected, RetryLater
from worker.pagerduty import PagerDuty, retry_after


class FakeSession:
    def __init__(self, status: int = 202, text: str = "{}", headers: dict[str, str] | None = None,
                 error: Exception | None = None) -> None:
        self.status, self.text, self.headers, self.error = status, text, headers or {}, error
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append(dict(kwargs, url=url))
        if self.error:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        response._content = self.text.encode()
        response.headers.update(self.headers)
        return response


def client(session: FakeSession) -> PagerDuty:
    return PagerDuty("http://127.0.0.1:9/", session=session,  # type: ignore[arg-type]
                     connect_timeout_s=1.5, read_timeout_s=4)


def test_2xx_is_delivered_with_timeouts_set() -> None:
    session = FakeSession(202, '{"status":"success"}')
    assert client(session).send("alert", b'{"a":1}') == '{"status":"success"}'
    call = session.calls[0]
    assert call["url"] == "http://127.0.0.1:9/v2/enqueue"
    assert call["timeout"] == (1.5, 4) and call["data"] == b'{"a":1}'
    assert call["headers"] == {"Content-Type": "application/json"}
    client(session).send("change", b"{}")
    assert session.calls[1]["url"] == "http://127.0.0.1:9/v2/change/enqueue"


@pytest.mark.parametrize("status", [429, 408, 500, 502, 503, 504])
def test_transient_statuses_retry_later(status: int) -> None:
    with pytest.raises(RetryLater) as caught:
        client(FakeSession(status, '{"status":"throttle exceeded"}')).send("alert", b"{}")
    assert caught.value.status == status and "throttle" in caught.value.reply


@pytest.mark.parametrize("status", [400, 413])
def test_invalid_event_answers_are_rejected_for_good(status: int) -> None:
    with pytest.raises(Rejected) as caught:
        client(FakeSession(status, '{"status":"invalid event"}')).send("alert", b"{}")
    assert caught.value.status == status and "invalid" in caught.value.reply


@pytest.mark.parametrize(("status", "hint"), [
    (401, "routing key"), (403, "routing key"), (404, "RELAY_PD_URL"), (405, "RELAY_PD_URL"),
    (407, "HTTPS_PROXY"), (422, "RELAY_PD_URL"), (301, "redirects to https://x/"),
    (302, "redirects to https://x/"),
])
def test_other_4xx_and_redirects_block_the_key_with_a_hint(status: int, hint: str) -> None:
    """A wrong URL or a proxy is the relay's misconfiguration, not the event's fault."""
    with pytest.raises(KeyBlocked) as caught:
        client(FakeSession(status, "Not Found", headers={"Location": "https://x/"})
               ).send("alert", b"{}")
    assert caught.value.status == status and hint in caught.value.hint


def test_a_url_requests_cannot_use_blocks_the_key() -> None:
    with pytest.raises(KeyBlocked) as caught:
        client(FakeSession(error=requests.exceptions.InvalidURL())).send("alert", b"{}")
    assert "RELAY_PD_URL" in caught.value.hint


@pytest.mark.parametrize("error", [
    requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError(),
    requests.exceptions.ChunkedEncodingError(),
])
def test_network_errors_retry_later(error: Exception) -> None:
    with pytest.raises(RetryLater):
        client(FakeSession(error=error)).send("alert", b"{}")


def test_retry_after_header_is_read() -> None:
    with pytest.raises(RetryLater) as caught:
        client(FakeSession(429, headers={"Retry-After": "17"})).send("alert", b"{}")
    assert caught.value.retry_after == 17


def test_retry_after_parses_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after("30", now) == 30
    assert retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60
    assert retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert retry_after("soon", now) is None and retry_after(None) is None
