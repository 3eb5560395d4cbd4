"""Sender text in chat messages is text, never markup, per platform.

A value (summary, source, dedup_key, a link's text, any ``{{ }}`` of a chat template) is
first made one line: line breaks become spaces, other control characters, bidi controls
and C1 controls are written as escapes (``\\x1b``, ``\\u202e``). Then, for each platform:

- mentions: an ``@`` that is not right after a letter or digit gets a WORD JOINER
  (U+2060) after it, so ``@channel``, ``@here``, ``@all`` or ``@alice`` notify no one,
  nor ``db.@channel``, ``-@here``, ``_@all`` or ``a:@all`` (Mattermost parses mentions in
  a webhook's text, and splits words at ``.``, ``-`` and ``:`` and strips a leading
  ``_``); mail addresses (``alice@example.org``) are left alone;
- Slack (mrkdwn): ``&``, ``<`` and ``>`` become entities, as Slack's formatting reference
  asks: ``<!channel>``, ``<@U1>`` and ``<url|text>`` links then cannot be written;
- Telegram (its HTML parse mode): ``&``, ``<`` and ``>`` become entities, so no tag
  (``<a>``, ``<b>``, ``<tg-spoiler>``) can be written and no parse error refuse it;
- Mattermost, Webex, Teams and Discord (Markdown): every character that Markdown reads as syntax
  (``\\ ` * _ { } [ ] ( ) < > # ! | ~ &``, and a list or heading mark at its start) gets
  a backslash, so links ``[x](y)``, images ``![x](y)``, HTML, emphasis and Webex's
  ``<@all>`` show as typed.

Links are made only by the relay (``link``), only of http(s) URLs, with the URL
percent-encoded so that it cannot close the link; anything else (``javascript:``,
``data:``) is shown as text.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

from jinja2 import Undefined
from jinja2.sandbox import SandboxedEnvironment

from relay.logs import CONTROL, printable

_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")
# an @ not right after a letter or digit: Mattermost splits words at '.', '-', ':' and
# strips a leading '_' too, so 'db.@channel', '-@here', '_@all' and 'a:@all' mention
_MENTION = re.compile(r"(?<![^\W_])@(?=[\w.-])")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#!|~&])")
_LEADING_MARK = re.compile(r"^[-+=]")
_LEADING_NUMBER = re.compile(r"^(\d+)\.")
WORD_JOINER = "\u2060"
URL_SAFE = "/:?#@!$&'*+,;=%-._~"


def one_line(value: object) -> str:
    """``value`` as one line of text: breaks made spaces, every control written escaped
    (as log lines write them: ``relay.logs.printable``)."""
    text = _BREAKS.sub(" ", "" if isinstance(value, Undefined) else str(value))
    return printable(text.replace("\t", " "), sys.maxsize)


def unmention(text: str) -> str:
    return _MENTION.sub("@" + WORD_JOINER, text)


def slack(value: object) -> str:
    text = unmention(one_line(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(value: object) -> str:
    text = _MARKDOWN.sub(r"\\\1", unmention(one_line(value)).strip())
    text = _LEADING_MARK.sub(r"\\\g<0>", text)  # a list's mark, a heading's underline
    return _LEADING_NUMBER.sub(r"\1\\.", text)  # an ordered list's mark


def web_url(href: object) -> str | None:
    """``href`` as a link target when it is an http(s) URL, else None."""
    if not isinstance(href, str) or CONTROL.search(href) or any(c.isspace() for c in href):
        return None
    try:
        parts = urlparse(href)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return None
    return quote(href, safe=URL_SAFE) if ok else None


@dataclass(frozen=True)
class Style:
    """How one platform writes a value, a link and the headline."""

    escape: Callable[[object], str]
    link: Callable[[str, str], str]  # (text, URL already checked and encoded)
    bold: str  # what goes around the headline


def _plain_link(text: str, url: str) -> str:
    return f"{text}: {url}"


def html(value: object) -> str:
    text = unmention(one_line(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html_link(text: str, url: str) -> str:
    return f'<a href="{url.replace("&", "&amp;")}">{text}</a>'


PLAIN = Style(one_line, _plain_link, "")
HTML = Style(html, _html_link, "")  # Telegram: the headline goes in <b></b>
SLACK = Style(slack, lambda text, url: f"<{url.replace('&', '&amp;')}|{text}>", "*")
MARKDOWN = Style(markdown, lambda text, url: f"[{text}]({url})", "**")
STYLES = {"slack": SLACK, "mattermost": MARKDOWN, "webex": MARKDOWN, "teams": MARKDOWN,
          "discord": MARKDOWN, "telegram": HTML}


def link(style: Style, text: object, href: object) -> str:
    """A link line: a link when ``href`` is http(s), else its text and href as text."""
    url = web_url(href)
    shown = style.escape(text or "link")
    if url is None:
        return f"{shown}: {style.escape(href or '')}"
    return style.link(shown, url)


def sandbox(style: Style) -> SandboxedEnvironment:
    """A chat template's sandbox: every ``{{ }}`` is escaped for the platform."""
    finalize: Any = None if style is PLAIN else style.escape
    return SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True,
                                finalize=finalize)


SANDBOXES = {style: sandbox(style) for style in (PLAIN, SLACK, MARKDOWN, HTML)}
