"""Sender text in channel messages is data, never markup: a webhook's JSON body takes
every value JSON-encoded, and the default chat text escapes mentions, markdown and HTML
for each platform (issue 23, finding 5)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from relay.channels import messages
from relay.channels.notice import Notice
from relay.errors import ConfigError, Rejected
from relay.routes.channels import Channel
from relay.routes.config import load
from tests.conftest import trigger

README = Path(__file__).resolve().parent.parent / "README.md"
HOSTILE_KEY = 'x", "state": "resolved", "title": "all clear'


def notice(summary: str = "disk full", dedup_key: str = "disk", source: str = "db-1",
           **event: Any) -> Notice:
    found = trigger(summary, dedup_key=dedup_key,
                    payload={"summary": summary, "source": source, "severity": "critical"})
    found.update(event)
    return Notice("n1", "trigger", found, key="db", severity="critical", summary=summary)


def readme_body() -> str:
    """The webhook ``body`` of the README's channels example, as a user would copy it."""
    found = re.search(r"^    body: '(.*)'(?:  +#.*)?$", README.read_text(), re.MULTILINE)
    assert found, "the README's channels example has a webhook body"
    return found.group(1)


OLD_README_BODY = ('{"title": {{ summary | tojson }}, "state": "{{ state }}", '
                   '"key": "{{ dedup_key }}"}')


@pytest.mark.parametrize("body", [OLD_README_BODY, "README"])
def test_a_hostile_dedup_key_adds_or_changes_no_field_of_a_webhook_body(body: str) -> None:
    template = readme_body() if body == "README" else body
    hook = Channel("h", "webhook", url="https://h.example/x", body=template)
    try:
        sent = messages.message(hook, notice("disk full", HOSTILE_KEY))
    except Rejected:
        return  # a body that would let a value out of its string is not sent at all
    assert sent["state"] == "triggered" and sent["title"] == "disk full", sent
    assert set(sent) == {"title", "state", "key"} and sent["key"] == HOSTILE_KEY


def test_the_readme_body_sends_each_value_as_json() -> None:
    hook = Channel("h", "webhook", url="https://h.example/x", body=readme_body())
    sent = messages.message(hook, notice('say "hi" \\ {{ 7*7 }}', HOSTILE_KEY))
    assert sent == {"title": 'say "hi" \\ {{ 7*7 }}', "state": "triggered", "key": HOSTILE_KEY}


def test_every_value_in_a_body_is_json_whatever_it_holds() -> None:
    body = ('{"k": {{ dedup_key }}, "d": {{ custom_details }}, "links": {{ links }}, '
            '"t": {{ summary | tojson }}, "n": {{ summary | length }}, "u": {{ summary | upper }},'
            ' "j": {{ dedup_key ~ "-" ~ key }}, "none": {{ no_such_field }}}')
    hook = Channel("h", "webhook", url="https://h.example/x", body=body)
    sent = messages.message(hook, notice("a\n\"b\"", HOSTILE_KEY, custom_details={"x": [1]},
                                         links=[{"href": "https://e.example", "text": "e"}]))
    assert sent == {"k": HOSTILE_KEY, "d": {}, "links": [{"href": "https://e.example",
                                                          "text": "e"}],
                    "t": 'a\n"b"', "n": 5, "u": 'A\n"B"', "j": HOSTILE_KEY + "-db", "none": None}


def test_a_body_that_places_a_value_inside_quotes_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "routes.yml"
    path.write_text(f"""
channels:
  - name: tickets
    type: webhook
    url: https://tickets.example.org/api
    body: '{OLD_README_BODY}'
  - name: fine
    type: webhook
    url: https://tickets.example.org/api
    body: '{readme_body()}'
""")
    with pytest.raises(ConfigError) as caught:
        load(path, ["db"])
    problems = "\n".join(caught.value.problems)
    assert "channels[0].body:" in problems and "channels[1]" not in problems, problems
    assert "without quotes" in problems and "JSON" in problems, problems


def test_the_load_check_samples_every_field_a_template_reads() -> None:
    from relay.routes.jsonbody import SAMPLE

    assert set(SAMPLE) == set(messages.context(notice()))


# What a sender controls, in every form that became markup, a mention or a control.
HOSTILE_TEXT = ("@channel @here @all <!channel> <!here> <@all> [click](javascript:alert(1)) "
                "![pixel](https://track.example/p.gif) <b>bold</b> <img src=x onerror=1> "
                "*star* _under_ `code` \x1b[31mred\x1b[0m\r\n# heading\u202eevil \\")
HOSTILE_LINKS = [{"href": "javascript:alert(1)", "text": "[x](javascript:y)"},
                 {"href": "data:text/html,<script>1</script>", "text": "data"},
                 {"href": "https://ok.example/a_(b)?c=1&d=<2>|3", "text": "@channel *docs*"}]


def chat_text(kind: str, sent: dict[str, Any]) -> str:
    if kind == "teams":
        blocks = sent["attachments"][0]["content"]["body"]
        return "\n\n".join(block["text"] for block in blocks)
    return str(sent["markdown"] if kind == "webex" else sent["text"])


def hostile(kind: str, template: str | None = None) -> str:
    event = notice(HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT, links=HOSTILE_LINKS,
                   client=HOSTILE_TEXT, client_url="javascript:alert(2)")
    channel = Channel("c", kind, url="https://c.example/x", room="R1", template=template)
    return chat_text(kind, messages.message(channel, event))


CHATS = ("slack", "mattermost", "teams", "webex")


@pytest.mark.parametrize("kind", CHATS)
@pytest.mark.parametrize("template", [None, "{{ summary }} from {{ source }} ({{ dedup_key }})"])
def test_chat_text_carries_no_mention_and_no_control_a_sender_wrote(kind: str,
                                                                    template: str | None) -> None:
    text = hostile(kind, template)
    assert not re.search(r"@(channel|here|all|everyone)\b", text), text
    assert "<!channel>" not in text and "<!here>" not in text and "<@all>" not in text, text
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), text
    if template is None:  # a value's line breaks do not make lines of their own
        assert not re.search(r"\n\\?# heading", text), text


@pytest.mark.parametrize("kind", ["mattermost", "teams", "webex"])
@pytest.mark.parametrize("template", [None, "{{ summary }} from {{ source }} ({{ dedup_key }})"])
def test_markdown_chats_render_sender_text_as_text(kind: str, template: str | None) -> None:
    """Rendered as CommonMark (raw HTML on): the only links are http(s) ones the relay
    made, there is no image and no HTML but the relay's own emphasis."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(hostile(kind, template))
    tags = set(re.findall(r"<(/?[a-z0-9]+)", html))
    assert tags <= {"p", "/p", "strong", "/strong", "a", "/a", "br", "/br"}, (tags, html)
    hrefs = re.findall(r'<a href="([^"]*)"', html)
    assert all(href.startswith("https://") for href in hrefs), hrefs
    assert "javascript:" not in "".join(hrefs) and "<img" not in html, html
    if template is None:  # the one http(s) link is a link, the others are not
        assert hrefs == ["https://ok.example/a_%28b%29?c=1&amp;d=%3C2%3E%7C3"], html


@pytest.mark.parametrize("template", [None, "{{ summary }} from {{ source }} ({{ dedup_key }})"])
def test_slack_text_keeps_its_control_characters_to_the_relay(template: str | None) -> None:
    text = hostile("slack", template)
    # Slack's controls are <, > and &: every < opens a link the relay made, to http(s)
    assert [m.start() for m in re.finditer("<", text)] == \
        [m.start() for m in re.finditer("<https://", text)], text
    assert "&lt;!channel&gt;" in text or "&lt;\u2060!channel&gt;" in text or template, text
    if template is None:
        assert "<https://ok.example/a_%28b%29?c=1&amp;d=%3C2%3E%7C3|" in text, text
    sent = messages.message(Channel("c", "slack", url="https://c.example"), notice())
    assert sent["unfurl_links"] is False and sent["unfurl_media"] is False


def test_the_default_text_still_reads_well() -> None:
    event = notice("disk full on db-1", "disk_1", links=[{"href": "https://wiki.example/db",
                                                           "text": "runbook"}])
    sent = messages.message(Channel("m", "mattermost", url="https://m.example"), event)
    lines = sent["text"].split("\n")
    assert lines[0] == "**🔴 TRIGGERED [critical] disk full on db-1**", lines
    assert "dedup_key: disk\\_1" in lines and "[runbook](https://wiki.example/db)" in lines
    slack = messages.message(Channel("s", "slack", url="https://s.example"), event)["text"]
    assert "<https://wiki.example/db|runbook>" in slack and "dedup_key: disk_1" in slack


def test_jinja2_is_pinned_past_its_known_sandbox_escapes() -> None:
    """CVE-2024-56326 (fixed in 3.1.5) and CVE-2025-27516 (|attr reaching str.format,
    fixed in 3.1.6): the pin says so, and the second escape is refused by every sandbox
    a channel template runs in."""
    import tomllib
    from importlib.metadata import version

    from jinja2.exceptions import SecurityError

    from relay.channels import escape
    from relay.routes import jsonbody
    from relay.routes.fields import SANDBOX

    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text())
    assert "Jinja2>=3.1.6,<4" in pyproject["project"]["dependencies"]
    assert tuple(int(n) for n in version("jinja2").split(".")[:3]) >= (3, 1, 6)
    breakout = '{{ "{0.__class__.__mro__}" | attr("format")(1) }}'
    for sandbox in (SANDBOX, jsonbody.BODY_SANDBOX, *escape.SANDBOXES.values()):
        with pytest.raises(SecurityError):
            sandbox.from_string(breakout).render()
