"""Article pages to observations: exact text, stability across re-renders, refusals."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.errors import UnusableInput
from adapters.normalize import fingerprint
from adapters.observation import Observation
from adapters.page import parse_page

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAGES = FIXTURES / "pages"
EXPECTED = json.loads((FIXTURES / "changelog" / "expected-versions.json").read_text("utf-8"))
ARTICLE_URL = (
    "https://www.theguardian.com/politics/2017/dec/22/"
    "boris-johnson-meets-russian-counterpart-sergei-lavrov-moscow"
)
FETCHED_URL = ARTICLE_URL + "?CMP=share_btn_tw&utm_source=twitter"
HTML = {"Content-Type": "text/html; charset=utf-8"}


def page(name: str) -> bytes:
    return (PAGES / name).read_bytes()


def parse(name: str, headers: dict[str, str] | None = None, url: str = FETCHED_URL) -> Observation:
    return parse_page(page(name), url=url, headers=HTML if headers is None else headers)


def refusal(body: bytes, headers: dict[str, str] | None = None) -> UnusableInput:
    with pytest.raises(UnusableInput) as info:
        parse_page(body, url="https://news.example.com/story", headers=headers)
    assert "https://news.example.com/story" in str(info.value)  # the sentence names the page
    return info.value


# -- the article itself ----------------------------------------------------------------------


@pytest.mark.parametrize("number", [1, 2, 3])
def test_each_guardian_version_gives_the_trackers_title_byline_and_paragraphs(number: int) -> None:
    expected = EXPECTED["versions"][number - 1]
    obs = parse(f"guardian-v{number}.html")
    assert obs.title == expected["title"]
    assert obs.byline == expected["byline"]  # the visible byline, place included
    assert obs.paragraphs == expected["paragraphs"]
    assert obs.body == "\n\n".join(expected["paragraphs"])


def test_page_metadata_comes_from_declared_markup() -> None:
    obs = parse("guardian-v1.html")
    assert obs.channel == "page"
    assert obs.url == ARTICLE_URL  # rel=canonical on the same site, tracking params gone
    assert obs.source_name == "the Guardian"  # og:site_name as written
    assert obs.published_at == datetime(2017, 12, 22, 9, 11, 33, tzinfo=UTC)
    assert obs.updated_at == datetime(2017, 12, 22, 9, 40, 12, tzinfo=UTC)
    assert obs.standfirst is None


# -- stability: the same article rendered differently is the same observation ---------------


@pytest.mark.parametrize(
    "variant",
    [
        # re-indented with tabs, CRLF, paragraphs wrapped over lines, <P >, </p >,
        # attributes reversed and partly single-quoted, curly quotes as &rsquo; / &#x201C;
        "guardian-v1-reformatted.html",
        # another cookie banner, related list, most-viewed list, A/B test, asset hash,
        # copyright year, "rendered at" stamp, plus an inline rich link and ad slot
        "guardian-v1-other-chrome.html",
    ],
)
def test_same_article_differently_rendered_gives_an_identical_observation(variant: str) -> None:
    assert page(variant) != page("guardian-v1.html")
    assert parse(variant) == parse("guardian-v1.html")


def test_an_added_paragraph_changes_the_body_by_that_paragraph_only() -> None:
    before, after = parse("guardian-v1.html"), parse("guardian-v1-added-paragraph.html")
    added = [p for p in after.paragraphs if p not in before.paragraphs]
    assert len(added) == 1 and added[0].startswith("Downing Street said")
    assert [p for p in after.paragraphs if p != added[0]] == before.paragraphs
    assert replace(after, body=before.body) == before


def test_straight_versus_curly_quotes_is_a_different_text_in_those_characters_only() -> None:
    curly, straight = parse("guardian-v1.html").body, parse("guardian-v1-straight-quotes.html").body
    assert curly != straight
    assert curly.translate(str.maketrans("‘’“”", "''\"\"")) == straight
    assert fingerprint("t", None, curly) == fingerprint("t", None, straight)  # cosmetic, later


# -- decoding --------------------------------------------------------------------------------


def test_latin1_page_declared_only_in_the_http_header_decodes_correctly() -> None:
    headers = {"content-type": "text/html; charset=ISO-8859-1"}
    obs = parse("latin1-header-only.html", headers, url="https://www.alpineherald.ch/x")
    assert obs.title == "Zürich café owner wins £40,000 in pâtisserie dispute"
    assert obs.byline == "Anaïs Müller"
    assert obs.paragraphs[0].startswith("A café owner in Zürich has been awarded £40,000")
    assert "crème fraîche and Gruyère-infused" in obs.body
    assert "Ã" not in obs.body and "\ufffd" not in obs.body
    assert obs.url == "https://www.alpineherald.ch/news/2019/03/04/zurich-cafe-patisserie-dispute"
    assert obs.published_at == datetime(2019, 3, 4, 15, 20, tzinfo=UTC)  # +01:00 made UTC


def test_windows_1252_page_declared_only_in_a_meta_tag_keeps_its_curly_quotes() -> None:
    obs = parse("cp1252-meta-only.html", {"Content-Type": "text/html"})
    assert obs.title == "Council’s €2m bridge “will open by spring”"
    assert obs.byline == "Tom O’Neill, local democracy reporter"
    assert obs.paragraphs[0] == (
        "The council’s €2m footbridge over the Avon – delayed twice since 2018 – “will open by"
        " spring”, its transport chief said on Monday."
    )  # and not the headline again, though it sits inside <article>
    assert len(obs.paragraphs) == 3
    assert obs.published_at == datetime(2020, 2, 11, 7, 45, tzinfo=UTC)  # JSON-LD @graph


def test_utf8_page_mislabelled_latin1_by_the_server_is_not_turned_into_mojibake() -> None:
    assert parse("guardian-v1.html", {"Content-Type": "text/html; charset=iso-8859-1"}) == parse(
        "guardian-v1.html"
    )


def test_byte_order_mark_outranks_the_declared_charsets() -> None:
    utf16 = page("guardian-v1.html").decode("utf-8").encode("utf-16")  # BOM, then UTF-16 LE
    latin1 = {"Content-Type": "text/html; charset=iso-8859-1"}
    assert parse_page(utf16, url=FETCHED_URL, headers=latin1) == parse("guardian-v1.html")


def test_no_charset_anywhere_falls_back_to_utf8() -> None:
    body = re.sub(rb'<meta charset="utf-8">', b"", page("guardian-v1.html"))
    assert parse_page(body, url=FETCHED_URL) == parse("guardian-v1.html")


# -- refusals: what is not an article never becomes a version -----------------------------


def test_paywall_page_with_a_teaser_is_refused() -> None:
    assert refusal(page("paywall.html"), HTML).reason == "paywall"


def test_paywall_declared_only_in_json_ld_is_refused_when_the_text_is_short() -> None:
    body = re.sub(rb'<div class="paywall".*?</div>', b"", page("paywall.html"), flags=re.S)
    assert b"continue reading" not in body
    marker = (
        b'<script type="application/ld+json">'
        b'{"@type": "NewsArticle", "isAccessibleForFree": false}</script>'
    )
    assert refusal(body.replace(b"</head>", marker + b"</head>"), HTML).reason == "paywall"


def test_article_ending_in_a_continue_reading_prompt_is_refused_however_long() -> None:
    prompt = b"<p>Subscribe to continue reading this article.</p>\n            </div>"
    body = page("guardian-v2.html").replace(b"</p>\n            </div>", b"</p>" + prompt, 1)
    assert refusal(body, HTML).reason == "paywall"


def test_consent_interstitial_is_refused() -> None:
    assert refusal(page("consent-wall.html"), HTML).reason == "consent-wall"


def test_short_article_about_cookies_is_kept_despite_its_headline() -> None:
    original = "‘Things aren’t easy between us’: Boris Johnson meets Russian counterpart in Moscow"
    headline = "Regulator fines publishers over cookie consent banners"
    body = page("guardian-v1.html").replace(original.encode(), headline.encode())
    obs = parse_page(body, url=FETCHED_URL, headers=HTML)
    assert obs.title == headline
    assert obs.body == parse("guardian-v1.html").body


def test_section_front_of_headline_links_is_refused() -> None:
    assert refusal(page("section-front.html"), HTML).reason == "link-list"


def test_one_paragraph_stub_is_too_short_despite_its_cookie_banner() -> None:
    error = refusal(page("breaking-stub.html"), HTML)
    assert error.reason == "too-short"


def test_minimum_length_is_configurable() -> None:
    with pytest.raises(UnusableInput) as info:
        parse_page(page("guardian-v1.html"), url=FETCHED_URL, min_chars=5000)
    assert info.value.reason == "too-short"


def test_page_with_nothing_but_navigation_has_no_article() -> None:
    body = (
        b"<!DOCTYPE html><html><head><title>Home</title></head>"
        b"<body><nav><a href='/'>Home</a></nav><div></div></body></html>"
    )
    assert refusal(body).reason == "no-article"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"headline": "<p>Boris Johnson meets Lavrov</p>", "body": "..."}', None),
        (b'{"headline": "Boris Johnson meets Lavrov"}', {"Content-Type": "application/json"}),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01", None),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", None),
        (page("guardian-v1.html"), {"Content-Type": "image/png"}),
        (b"", None),
        (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>', None),
        (b"Just some plain text, with no markup at all.", {"Content-Type": "text/plain"}),
    ],
    ids=["json-sniffed", "json-declared", "png", "pdf", "declared-image", "empty", "atom", "text"],
)
def test_non_html_is_refused(body: bytes, headers: dict[str, str] | None) -> None:
    assert refusal(body, headers).reason == "not-html"


# -- identity ----------------------------------------------------------------------------------


def test_canonical_link_to_another_domain_is_ignored() -> None:
    syndicated = page("guardian-v1.html").replace(
        b'rel="canonical" href="https://www.theguardian.com/',
        b'rel="canonical" href="https://www.example-aggregator.com/',
    )
    obs = parse_page(syndicated, url="https://amp.theguardian.com/politics/story", headers=HTML)
    assert obs.url == "https://amp.theguardian.com/politics/story"
    assert obs.body == parse("guardian-v1.html").body


def test_canonical_link_from_a_subdomain_of_the_same_site_is_followed() -> None:
    obs = parse("guardian-v1.html", url="https://amp.theguardian.com/politics/story")
    assert obs.url == ARTICLE_URL
