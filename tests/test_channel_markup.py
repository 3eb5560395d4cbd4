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
    from relay.channels.jsonbody import SAMPLE

    assert set(SAMPLE) == set(messages.context(notice()))
