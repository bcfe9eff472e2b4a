"""HTML fragments to text: the regex fast path gives what HTMLParser gives."""

from __future__ import annotations

import random
import re
import sys

import pytest

from adapters.htmltext import (
    _collected_paragraphs,
    _simple_paragraphs,
    collapse,
    html_to_paragraphs,
    html_to_text,
)

_PIECES = [
    "<p>", "</p>", "<P>", "</p >", "<br>", "<br/>", "<BR />", "<b>", "</b>", "<em>", "</em>",
    '<div class="x">', "<div class='y' data-n=3>", "</div>", "<li>", "</li>", "<ul>", "</ul>",
    "<h2>", "</h2>", "<iframe>", "</iframe>", "<iframe/>", "<noscript>", "</noscript>",
    "<svg width=10>", "</svg>", "<script>", "</script>", "<style>", "</style>", "</p/>",
    '<img src="a.png" alt="a &amp; b">', "<a href=http://x.example/>", '<a title="1 > 0">',
    "<a href=/x>", "</a>", "&amp;", "&#8217;", "&nbsp;", "& ", "<!-- note -->", "<", ">",
    "a < b", "Minister", " resigns", ".", "\n", "\t", "  ", "\u00a0", "caf\u00e9", "\u201cq\u201d",
    "<td>", "</td>", "<hr>", "<unknown-tag>", "<x1>", "</x1>", "<![CDATA[x]]>", "<?pi?>",
]  # fmt: skip


def test_fast_path_agrees_with_htmlparser_on_random_fragments() -> None:
    rng = random.Random(20261122)
    fast = 0
    for _ in range(20_000):
        fragment = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 14)))
        simple = _simple_paragraphs(fragment)
        if simple is not None:
            fast += 1
            assert simple == _collected_paragraphs(fragment), fragment
    assert fast > 2_000  # the fast path was taken often enough to mean something


@pytest.mark.parametrize(
    ("fragment", "paragraphs"),
    [
        ("<p>One <b>bold</b> line.</p><p>Two</p>", ["One bold line.", "Two"]),
        ("Before<br/>after<BR>end", ["Before", "after", "end"]),
        ("<p>a</p><iframe>ad</iframe><p>b</p>", ["a", "b"]),
        ("<p>Fish &amp; chips</p>", ["Fish & chips"]),  # an entity: HTMLParser's path
        ("<p>x</p><script>var a = '<p>';</script>", ["x"]),  # raw text: HTMLParser's path
    ],
)
def test_paragraphs(fragment: str, paragraphs: list[str]) -> None:
    assert html_to_paragraphs(fragment) == paragraphs
    assert html_to_text(fragment) == "\n\n".join(paragraphs)


@pytest.mark.parametrize(
    "fragment",
    [
        "word " * 20_000 + "<",  # a long text, then what the fast path refuses
        "<p>" + "x" * 50_000 + "&",
        "<a" + " b=c" * 20_000 + " <",
        "<p" + " " * 50_000 + "x=",
    ],
)
def test_a_refused_fragment_is_refused_in_linear_time(fragment: str) -> None:
    """Without possessive quantifiers these never finished (catastrophic backtracking)."""
    assert _simple_paragraphs(fragment) is None
    assert html_to_paragraphs(fragment) == _collected_paragraphs(fragment)


def test_collapse_treats_the_same_characters_as_whitespace_as_the_regex() -> None:
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    regex_whitespace = "".join(re.findall(r"\s", everything))
    assert "".join(c for c in everything if c.isspace()) == regex_whitespace
    assert collapse(f"{regex_whitespace}a{regex_whitespace}b{regex_whitespace}") == "a b"
