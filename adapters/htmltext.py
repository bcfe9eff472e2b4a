"""HTML fragments (feed content, summaries, titles) to clean text. Stdlib only, pure.

Paragraphs come from block elements and ``<br>``; they are joined by a blank line, the
shape :class:`adapters.observation.Observation` expects. Entities are decoded by
:class:`html.parser.HTMLParser` itself (``convert_charrefs``); scripts, styles and other
non-text containers are dropped with everything inside them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section",
    "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})  # fmt: skip
_DROPPED = frozenset({
    "script", "style", "noscript", "template", "head", "iframe", "object", "svg", "math",
})  # fmt: skip
_BLANK_LINE = re.compile(r"\n\s*\n")


def collapse(text: str) -> str:
    """One line: runs of whitespace (newlines, non-breaking spaces) become one space.

    ``str.split()`` and the regex ``\\s`` use the same definition of whitespace
    (``str.isspace``, checked over every code point): the same result as replacing
    ``\\s+`` by a space and stripping, at a quarter of the cost."""
    return " ".join(text.split())


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._current: list[str] = []
        self._dropped_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self._dropped_depth += 1
        elif tag in _BLOCKS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:  # <br/>, <hr/>; a self-closed <script/> has no content to drop
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self._dropped_depth = max(0, self._dropped_depth - 1)
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._dropped_depth:
            self._current.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = collapse("".join(self._current))
        if text:
            self.paragraphs.append(text)
        self._current = []


def html_to_paragraphs(fragment: str) -> list[str]:
    simple = _simple_paragraphs(fragment)
    return simple if simple is not None else _collected_paragraphs(fragment)


def _collected_paragraphs(fragment: str) -> list[str]:
    collector = _TextCollector()
    collector.feed(fragment)
    collector.close()
    return collector.paragraphs


# The common shape of feed summaries and content, parsed with one regex instead of
# HTMLParser (about 5 times faster): text without entities, and tags with plain
# attributes. Anything else (an entity, a comment, a stray "<", a quoted ">", a script or
# style element, whose content HTMLParser does not parse) goes to the collector.
# tests/unit/test_htmltext.py checks both give the same paragraphs.
# Possessive quantifiers throughout: with "(?:[^<&]+|...)*" a long text that fails to
# match at its end (a stray "<" after it) made the regex engine try every way to split
# it, which never ends on a hostile feed.
_VALUE = r"""(?:"[^"<>&]*+"|'[^'<>&]*+'|[^\s"'<>=`&/]++)"""
_ATTRIBUTE = rf"\s++[a-zA-Z_:][-a-zA-Z0-9_:.]*+(?:\s*+=\s*+{_VALUE})?+"
_TAG = rf"<(/?)([a-zA-Z][a-zA-Z0-9]*+)(?:{_ATTRIBUTE})*+\s*+(/?)>"
_SIMPLE = re.compile(rf"(?:[^<&]++|{_TAG})*+")
_TOKEN = re.compile(rf"([^<&]++)|{_TAG}")
_RAW_TEXT = frozenset({"script", "style"})


def _simple_paragraphs(fragment: str) -> list[str] | None:
    """What the collector gives for a fragment of the simple shape; None otherwise."""
    if not _SIMPLE.fullmatch(fragment):
        return None
    paragraphs: list[str] = []
    current: list[str] = []
    dropped = 0
    for text, closing, name, self_closed in _TOKEN.findall(fragment):
        if text:
            if not dropped:
                current.append(text)
            continue
        tag = name.lower()
        if tag in _RAW_TEXT or (closing and self_closed):
            return None
        if tag in _DROPPED and not self_closed:
            dropped = max(0, dropped - 1) if closing else dropped + 1
        elif tag in _BLOCKS:
            paragraph = collapse("".join(current))
            if paragraph:
                paragraphs.append(paragraph)
            current = []
    paragraph = collapse("".join(current))
    if paragraph:
        paragraphs.append(paragraph)
    return paragraphs


def html_to_text(fragment: str) -> str:
    """Clean text of an HTML fragment: paragraphs joined by a blank line."""
    return "\n\n".join(html_to_paragraphs(fragment))


def plain_to_text(text: str) -> str:
    """Plain text in the same shape: blank-line separated paragraphs, each on one line."""
    return "\n\n".join(p for p in (collapse(b) for b in _BLANK_LINE.split(text)) if p)


def html_to_line(fragment: str) -> str:
    """An HTML title as one line of text."""
    return collapse(" ".join(html_to_paragraphs(fragment)))
