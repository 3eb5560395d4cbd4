"""Whatever a sender writes: an SMS stays one GSM-7 segment with its state tag, Telegram's
HTML parses as Telegram's does and fits 4,096, Discord's Markdown fits 4,096 and pings no
one (hypothesis)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.channels import messages, phone
from relay.routes.channels import Channel
from tests.standins import TelegramHtml
from tests.test_channel_types import notice

TEXT = st.text(st.characters(codec="utf-8"), max_size=3000)


@settings(max_examples=200, deadline=None)
@given(summary=TEXT, source=st.text(max_size=100),
       action=st.sampled_from(["trigger", "acknowledge", "resolve"]))
@example(summary="🔥{}[]~^|€\\" * 100, source="db1", action="resolve")
def test_an_sms_is_one_segment_and_keeps_its_state(summary: str, source: str,
                                                   action: str) -> None:
    found = notice(summary, action=action)
    found.event["payload"]["source"] = source
    text = messages.message(Channel("s", "sms", to=("+15550000001",)), found)["text"]
    assert phone.septets(text) <= 160
    assert all(c in phone.GSM_BASIC or c in phone.GSM_EXTENDED for c in text)
    tag = {"acknowledge": " [ack]", "resolve": " [resolved]"}.get(action, "")
    assert text.startswith("CRIT") and text.endswith(tag)


@settings(max_examples=200, deadline=None)
@given(summary=TEXT, href=st.text(max_size=200), link_text=st.text(max_size=100))
@example(summary="<b>&amp;</b> <a href=x>@all</a> &#60;" * 300, href='"><script>',
         link_text="</a><b>")
def test_telegram_html_always_parses_and_fits(summary: str, href: str, link_text: str) -> None:
    found = notice(summary, links=[{"href": "https://x.example/" + href, "text": link_text}])
    text = messages.message(Channel("t", "telegram", chat="1"), found)["text"]
    parser = TelegramHtml()
    parser.feed(text)
    parser.close()
    assert not parser.errors and not parser.open, (parser.errors, text)
    assert 0 < phone.utf16("".join(parser.shown)) <= 4096


@settings(max_examples=200, deadline=None)
@given(summary=TEXT)
@example(summary="@everyone @here <@&1> " * 500)
def test_discord_fits_and_pings_no_one(summary: str) -> None:
    body = messages.message(Channel("d", "discord"), notice(summary))
    assert body["allowed_mentions"] == {"parse": []}
    description = body["embeds"][0]["description"]
    assert phone.utf16(description) <= 4096
    assert "@everyone" not in description and "@here" not in description
