"""A webhook ``body`` with a value inside quotes is refused at load, whatever the sample
holds (issue 23, review).

README: "A body that ... puts a value inside quotes, is refused when the routes file is
checked". jsonbody.check rendered with SAMPLE only, where ``custom_details.runbook`` (or
any field SAMPLE lacks) is undefined -> ``null`` -> ``"null"``: valid JSON, so the body
was accepted. A real event with a runbook then rendered ``""https://...""``: not JSON, the
message was Rejected, and the channel never heard of the event. Now the check reads the
template's text (``quoted``) and renders it with every ``{{ }}`` written as a string."""

from __future__ import annotations

from typing import Any

import pytest

from relay.channels import messages
from relay.channels.notice import Notice
from relay.errors import Rejected
from relay.routes import jsonbody
from relay.routes.channels import Channel
from tests.conftest import trigger

BODY = '{"title": {{ summary }}, "runbook": "{{ custom_details.runbook }}"}'
GOOD = ['{"title": {{ summary }}, "runbook": {{ custom_details.runbook }}}',
        '{"title": {{ summary | tojson }}, "details": {{ custom_details | tojson }}}',
        '{"a": "say \\"hi\\" {not a value}", "b": {{ dedup_key }}, "n": {{ 3 }}}',
        '{"hrefs": [{% for l in links %}{{ l.href }}{% if not loop.last %},'
        '{% endif %}{% endfor %}]}',
        '{ {{ route }}: {{ event.payload.severity | default("info") }} }{# "a" #}']
# what a real event can hold that SAMPLE does not: a field, a number, a list, an object
DETAILS: list[dict[str, Any]] = [{}, {"runbook": "https://wiki.example/disk"},
                                 {"runbook": 3}, {"runbook": ["a", 'b"c']},
                                 {"runbook": {"url": 'x", "state": "resolved'}}]


def notice(details: dict[str, Any]) -> Notice:
    event = trigger("disk full", dedup_key="disk", payload={
        "summary": "disk full", "source": "db-1", "severity": "critical",
        "custom_details": details})
    return Notice("n1", "trigger", event, key="db", severity="critical", summary="disk full")


def test_a_quoted_value_is_refused_at_load() -> None:
    _, why = jsonbody.check(BODY)
    assert why, "the body puts a value inside quotes, yet the check accepted it"
    assert "inside quotes" in why


@pytest.mark.parametrize("body", [BODY, *GOOD])
def test_a_body_the_check_accepted_sends_a_real_event(body: str) -> None:
    hook = Channel("h", "webhook", url="https://h.example/x", body=body)
    accepted = jsonbody.check(body)[1] == ""
    assert accepted == (body != BODY), jsonbody.check(body)[1]
    for details in DETAILS if accepted else []:
        try:
            messages.message(hook, notice(details))
        except Rejected as exc:
            pytest.fail(f"a body accepted at load fails on a real event: {exc}")


FIELDS = ["state", "summary", "custom_details.runbook", "custom_details", "event.payload.x",
          "links[0].href", "3", "none", "test", "custom_details | tojson",
          "custom_details.x | default('')", "summary ~ '!'"]
SHAPES = ['{{"a": "{v}"}}', '{{"a": "see {v} now"}}', '{{"a": "\\"{v}"}}', '["x", "{v}"]',
          '{{"{v}": 1}}', '{{"a": "{{% if custom_details.never %}}{v}{{% endif %}}"}}',
          '{{"a": "{{% for l in links %}}{v}{{% endfor %}}"}}', '{{"a":\n  "\n{v}"}}']


@pytest.mark.parametrize("shape", SHAPES)
def test_every_value_inside_quotes_is_refused_whatever_it_holds(shape: str) -> None:
    for field in FIELDS:
        body = shape.format(v="{{ " + field + " }}")
        _, why = jsonbody.check(body)
        assert why, f"accepted: {body}"


def test_each_of_the_two_readings_catches_what_the_other_misses() -> None:
    # a branch the sample does not take writes nothing: only the text's reading sees it
    untaken = '{"a": "{% if custom_details.never %}{{ summary }}{% endif %}"}'
    assert jsonbody.quoted(untaken) == [1]
    jsonbody.render(untaken, jsonbody.SAMPLE)  # renders as JSON with the sample's values
    # quotes opened in a branch, round a field the sample lacks: the text's reading is
    # misled and the sample's values make JSON; the rendering with strings is not fooled
    branch = '{"a": "{% if false %}"{% endif %}{{ custom_details.runbook }}"}'
    assert jsonbody.quoted(branch) == []
    jsonbody.render(branch, jsonbody.SAMPLE)
    assert "inside" in jsonbody.check(branch)[1]
    for body in (untaken, branch):
        assert jsonbody.check(body)[1]
