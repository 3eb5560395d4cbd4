"""A sender's summary mentions no one on Mattermost, however the @ is prefixed (issue 23,
review: before, '-@channel', '.@here', '_@all' and 'db.@channel' still mentioned).

escape.unmention() puts a WORD JOINER after an '@' only when the '@' is not preceded by
a word character, '.', '+' or '-'. Mattermost's mention parser (server,
app/mention_parser_standard.go, processText) splits the text into words on every rune
that is not ':', '.', '-', '_', '@', a letter or a number, then strips leading ":.-_"
from each word (TrimLeft) and, failing a match, splits the word again on '.', '-', ':'.
So '-@channel', '.@here', '_@all' (Markdown-escaped to '\\_@all') and 'db.@channel'
all reach Mattermost as a channel-wide mention. ``mattermost_mentions`` below is a port
of that parser's system-mention part."""

from __future__ import annotations

import string

import pytest

from relay.channels import messages
from relay.channels.notice import Notice
from relay.routes.channels import Channel
from tests.conftest import trigger

SYSTEM = {"@here", "@channel", "@all"}


def _fields(text: str, keep) -> list[str]:  # Go's strings.FieldsFunc
    words, word = [], ""
    for char in text:
        if keep(char):
            word += char
        elif word:
            words.append(word)
            word = ""
    return words + ([word] if word else [])


def mattermost_mentions(text: str) -> set[str]:
    """The system mentions Mattermost's StandardMentionParser finds in ``text``."""
    found: set[str] = set()
    for word in _fields(text, lambda c: c in ":.-_@" or c.isalpha() or c.isdigit()):
        if word[0] == ":" and word[-1] == ":":
            continue
        word = word.lstrip(":.-_")
        if word in SYSTEM:
            found.add(word)
            continue
        if not word.startswith("@") and any(c in word for c in ".-:"):
            found |= {w for w in _fields(word, lambda c: c not in ".-:") if w in SYSTEM}
    return found


def test_the_parser_port_sees_a_plain_mention_and_not_an_escaped_one() -> None:
    assert mattermost_mentions("disk full @channel") == {"@channel"}
    assert mattermost_mentions("disk full @\u2060channel") == set()


@pytest.mark.parametrize("summary", ["disk full -@channel", "disk full .@here",
                                     "disk full _@all", "db.@channel disk full"])
def test_no_sender_summary_mentions_the_whole_mattermost_channel(summary: str) -> None:
    event = trigger(summary, dedup_key="disk",
                    payload={"summary": summary, "source": "db-1", "severity": "critical"})
    notice = Notice("n1", "trigger", event, key="db", severity="critical", summary=summary)
    chat = Channel("mm", "mattermost", url="https://mm.example/hooks/x")
    text = messages.message(chat, notice)["text"]
    assert mattermost_mentions(text) == set(), text


# every ASCII punctuation mark and a few Unicode ones, before an @ and inside a word
MARKS = sorted(set(string.punctuation + " \u00b7\u2010\u2013\u3002\uff0e") - {"@"})
CHATS = ["mattermost", "slack", "teams", "webex"]


def chat_text(kind: str, summary: str, template: str | None = None) -> str:
    event = trigger(summary, dedup_key="disk",
                    payload={"summary": summary, "source": "db-1", "severity": "critical"})
    notice = Notice("n1", "trigger", event, key="db", severity="critical", summary=summary)
    chat = Channel("c", kind, url="https://chat.example/hooks/x", room="r")
    found = messages.message(chat, notice, template)
    if kind == "teams":
        return "\n".join(b["text"] for b in found["attachments"][0]["content"]["body"])
    return str(found.get("text") or found.get("markdown"))


@pytest.mark.parametrize("kind", CHATS)
@pytest.mark.parametrize("template", [None, "{{ summary }}", "db.{{ summary }}"])
def test_no_prefix_before_an_at_makes_a_mention(kind: str, template: str | None) -> None:
    for mark in MARKS:
        for shape in ("{m}@channel", "db{m}@here", "x{m}_@all", "{m}{m}@all", "a.b{m}@channel"):
            summary = "disk " + shape.format(m=mark)
            text = chat_text(kind, summary, template)
            assert mattermost_mentions(text) == set(), (summary, text)
            assert "@\u2060" in text, (summary, text)  # the @ was seen and joined


@pytest.mark.parametrize("kind", CHATS)
def test_a_mail_address_is_left_as_written(kind: str) -> None:
    text = chat_text(kind, "mail alice@example.org or ops1@db.example")
    assert "alice@example.org" in text.replace("\\", "") and "ops1@db" in text, text
