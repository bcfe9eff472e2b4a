"""Article web pages to one :class:`Observation` (channel ``page``). Pure: bytes in.

The page is re-polled and its text hashed, so one article must give exactly the same
observation however the page around it is rendered: re-indented, attributes reordered,
another ad, sidebar, "related" list, cookie banner or "rendered at" stamp. Hence:

* Decoding: a byte-order mark; else the ``Content-Type`` charset; else a ``<meta>``
  charset in the first 4 KiB; else :func:`adapters.textfile.decode_text` (UTF-8,
  plausible cp1252, charset_normalizer). A declared label must decode strictly, else the
  next step is tried. ISO-8859-1/ASCII mean cp1252, as in browsers; a Western single-byte
  label on valid non-ASCII UTF-8 gives UTF-8 (a mislabelled page would become mojibake).
* Text: trafilatura, ``fast`` (no readability/jusText fallback, whose choice depends on
  the whole page), precision over recall, no comments or tables. Each block it keeps is
  a paragraph (list items too), whitespace collapsed; a leading copy of the title is
  dropped.
* Metadata from declared markup only, never visible "updated 3 minutes ago" text:
  ``og:title`` (via trafilatura); ``article:published_time``, JSON-LD ``datePublished``
  or ``itemprop=datePublished`` (and the same for modified); ``og:site_name``; the first
  element classed ``*byline*`` if short and digit-free, else trafilatura's author.
  ``rel=canonical`` counts only on the same registrable domain (amp. to www. is fine; a
  syndicated copy keeps the URL it was fetched from).

What fails or looks wrong raises :class:`UnusableInput`, checked in this order:

* ``not-html``: a non-HTML ``Content-Type`` (image, JSON, PDF...), magic or NUL bytes,
  text that does not start with ``<`` or has no HTML tag, or an RSS/Atom/RDF root.
* ``link-list``: the main content (``<main>``, else ``<body>``, minus nav, header,
  footer, aside, forms) is over 60 % link text, or over 60 % of the extracted body is
  paragraphs that are exactly some link's text (a section front).
* ``paywall``: a paywall phrase ("subscribe to continue", "is for subscribers"...) in the
  last paragraph; or, with a body under 1500 characters, such a phrase anywhere on the
  page or JSON-LD ``isAccessibleForFree: false``.
* ``consent-wall``: a body under 1500 characters that is at least 30 % consent
  paragraphs ("we use cookies", "your consent"...); or a body too short to keep whose
  title is about cookies/consent ("Before you continue") or whose page text is at least
  50 % such paragraphs (so a cookie banner beside a stub stays ``too-short``).
* ``no-article``: trafilatura found no main text.
* ``too-short``: a body under ``min_chars`` (200) or ``min_paragraphs`` (2).
"""

from __future__ import annotations

import codecs
import copy
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.html
import trafilatura
from courlan import extract_domain
from lxml import etree
from trafilatura.settings import Document

from adapters.errors import UnusableInput
from adapters.htmltext import collapse, html_to_paragraphs
from adapters.observation import Observation
from adapters.textfile import decode_text

__all__ = ["parse_page"]

WALL_MAX_CHARS = 1500
WALL_SHARE = 0.3
PAGE_WALL_SHARE = 0.5
LINK_SHARE = 0.6

_PAYWALL = (
    "subscribe to continue", "to continue reading", "subscribe to read", "for subscribers only",
    "is for subscribers", "to read the full article", "to read the rest of this",
    "limit of free articles", "free article limit", "reached your article limit",
)  # fmt: skip
_CONSENT = (
    "we use cookies", "uses cookies", "accept cookies", "accept all cookies", "use of cookies",
    "cookie settings", "manage cookies", "your consent", "manage consent", "we and our partners",
    "privacy choices", "privacy preferences", "before you continue", "reject all",
)  # fmt: skip
_CONSENT_TITLE = re.compile(
    r"\b(?:cookies?|consent|your privacy|privacy (?:choices|settings)|before you continue)\b", re.I
)
_NOT_HTML_TYPES = re.compile(
    r"^(?:image|audio|video|font|model)/|json|^application/(?:pdf|zip|gzip|octet-stream"
    r"|javascript|x-javascript|msword|vnd\.)|^text/(?:css|javascript|csv)"
)
_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"RIFF")
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_HTML_TAG = re.compile(
    r"<(?:!doctype\s+html|html|head|body|article|main|p|div|h1|title)[\s>/]", re.I
)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.I)
_META_CHARSET = re.compile(r"<meta[^>]*?" + _CHARSET.pattern, re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_FEED_ROOT = re.compile(
    r"^\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:rss|feed|rdf:RDF)\b", re.S
)
_WESTERN = frozenset({"cp1252", "iso8859_15"})
_OUTSIDE_CHROME = "[not(ancestor::aside or ancestor::nav or ancestor::footer)]"  # not a sidebar
_QUOTES = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")


def parse_page(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    min_chars: int = 200,
    min_paragraphs: int = 2,
) -> Observation:
    """The article on one fetched page, or :class:`UnusableInput` with a reason code."""
    content_type = {k.lower(): v for k, v in (headers or {}).items()}.get("content-type", "")
    _check_bytes(body, content_type, url)
    text = _decode(body, content_type, url)
    tree = _parse_html(text, url)
    title, paragraphs, author = _extract(text, url)
    meta, ld = _meta(tree), _json_ld(tree)
    _refuse(tree, text, ld, title, paragraphs, url, (min_chars, min_paragraphs))
    published = _first_date(meta.get("article:published_time"), ld.get("datePublished"),
                            _itemprop(tree, "datePublished"), meta.get("date"))  # fmt: skip
    modified = _first_date(meta.get("article:modified_time"), ld.get("dateModified"),
                           _itemprop(tree, "dateModified"))  # fmt: skip
    return Observation(
        title=title,
        body="\n\n".join(paragraphs),
        url=_canonical(tree, url),
        source_name=collapse(meta.get("og:site_name", "")) or None,
        published_at=published,
        updated_at=modified,
        byline=_byline(tree) or author,
        channel="page",
    )


# -- bytes and decoding --------------------------------------------------------------------


def _check_bytes(body: bytes, content_type: str, url: str) -> None:
    media = content_type.split(";")[0].strip().lower()
    if media and _NOT_HTML_TYPES.search(media):
        raise _unusable("not-html", url, f"is served as {media}, not HTML")
    if body.startswith(_MAGIC):
        raise _unusable("not-html", url, "is a binary file (image, PDF or archive), not HTML")
    if b"\x00" in body[:4096] and not body.startswith(_BOMS):
        raise _unusable("not-html", url, "holds NUL bytes, so it is binary, not HTML")
    if not body.strip():
        raise _unusable("not-html", url, "is empty")


def _decode(body: bytes, content_type: str, url: str) -> str:
    header = _CHARSET.search(content_type)
    meta = _META_CHARSET.search(body[:4096].decode("latin-1"))
    if not body.startswith(_BOMS):  # a byte-order mark outranks every declaration
        for found, from_meta in ((header, False), (meta, True)):
            decoded = _decode_declared(body, found.group(1), from_meta) if found else None
            if decoded is not None:
                return decoded
    try:
        return decode_text(body, name=url)  # BOM, UTF-8, plausible cp1252, charset_normalizer
    except UnusableInput as exc:
        raise _unusable("not-html", url, "cannot be decoded as text") from exc


def _decode_declared(body: bytes, label: str, from_meta: bool) -> str | None:
    try:
        codec = codecs.lookup(label.strip().lower()).name.replace("-", "_")
    except LookupError:
        return None
    if codec in {"latin_1", "iso8859_1", "ascii"}:
        codec = "cp1252"  # as browsers do: ISO-8859-1 pages routinely hold cp1252 quotes
    if from_meta and codec.startswith(("utf_16", "utf_32")):
        codec = "utf_8"  # a meta tag readable as ASCII cannot be in UTF-16 (HTML spec)
    if codec in _WESTERN and not body.isascii():
        try:
            return body.decode("utf-8")  # valid non-ASCII UTF-8 is not Latin text
        except UnicodeDecodeError:
            pass
    try:
        return body.decode(codec)
    except UnicodeDecodeError:
        return None


# -- text ----------------------------------------------------------------------------------


def _parse_html(text: str, url: str) -> Any:
    if not text.lstrip().startswith("<") or not _HTML_TAG.search(text):
        raise _unusable("not-html", url, "is not an HTML document")
    if _FEED_ROOT.match(text):
        raise _unusable("not-html", url, "is a feed, not an HTML page")
    try:
        return lxml.html.document_fromstring(_XML_DECL.sub("", text))
    except (etree.ParserError, ValueError) as exc:
        raise _unusable("not-html", url, "cannot be parsed as HTML") from exc


def _extract(text: str, url: str) -> tuple[str, list[str], str | None]:
    """Title, paragraphs and author as trafilatura finds them (empty when it finds none)."""
    try:
        doc = trafilatura.bare_extraction(
            text, url=url, fast=True, favor_precision=True, include_comments=False,
            include_tables=False, with_metadata=True, deduplicate=False,
            date_extraction_params={"extensive_search": False, "original_date": True},
        )  # fmt: skip
    except ValueError:
        doc = None
    if not isinstance(doc, Document):
        return "", [], None
    title = collapse(doc.title or "")
    paragraphs = _paragraphs(doc.body) if doc.body is not None else []
    if paragraphs and paragraphs[0] == title:
        paragraphs = paragraphs[1:]  # the headline, when it sits inside the article block
    return title, paragraphs, collapse(doc.author or "") or None


def _paragraphs(body: Any) -> list[str]:
    for lb in body.iter("lb"):
        lb.text = " "  # a line break inside a paragraph is a space, not nothing
    return [p for p in (collapse("".join(el.itertext())) for el in _blocks(body)) if p]


def _blocks(element: Any) -> Iterator[Any]:
    """Leaf blocks of trafilatura's output tree: p, head, item, row, code..."""
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if child.tag in {"list", "table", "quote", "div"} and any(
            isinstance(c.tag, str) and c.tag not in {"lb", "hi", "ref"} for c in child
        ):
            yield from _blocks(child)
        else:
            yield child


# -- refusals ------------------------------------------------------------------------------


def _refuse(
    tree: Any, text: str, ld: dict[str, Any], title: str, paras: list[str], url: str,
    minimum: tuple[int, int],
) -> None:  # fmt: skip
    body = "\n\n".join(paras)
    too_short = len(body) < minimum[0] or len(paras) < minimum[1]
    links = {t for t in (collapse(a.text_content()) for a in tree.iter("a")) if t}
    if _link_density(tree) > LINK_SHARE or _share(paras, links) > LINK_SHARE:
        raise _unusable("link-list", url, "is mostly a list of links (a section front?)")
    page = html_to_paragraphs(text) if len(body) < WALL_MAX_CHARS else []
    if _is_paywall(paras, page, ld, short=len(body) < WALL_MAX_CHARS):
        raise _unusable("paywall", url, "shows a paywall instead of the article")
    if len(body) < WALL_MAX_CHARS and _is_consent_wall(title, paras, page, too_short):
        raise _unusable("consent-wall", url, "shows a cookie or consent wall, not the article")
    if not paras:
        raise _unusable("no-article", url, "has no article text that could be extracted")
    if too_short:
        raise _unusable(
            "too-short", url, f"yields {len(body)} characters in {len(paras)} paragraph(s),"
            f" under the minimum of {minimum[0]} characters in {minimum[1]}"
        )  # fmt: skip


def _is_paywall(paras: list[str], page: list[str], ld: dict[str, Any], *, short: bool) -> bool:
    if paras and _has(paras[-1], _PAYWALL):
        return True
    free = str(ld.get("isAccessibleForFree", "")).lower() == "false"
    return short and (free or any(_has(p, _PAYWALL) for p in page))


def _is_consent_wall(title: str, paras: list[str], page: list[str], too_short: bool) -> bool:
    consent = {p for p in paras + page if _has(p, _CONSENT)}
    if _share(paras, consent) >= WALL_SHARE:
        return True  # a story *about* cookies is rarely 30 % cookie-notice sentences
    return too_short and bool(
        _CONSENT_TITLE.search(title) or _share(page, consent) >= PAGE_WALL_SHARE
    )


def _has(text: str, phrases: tuple[str, ...]) -> bool:
    low = text.lower().translate(_QUOTES)
    return any(phrase in low for phrase in phrases)


def _share(paras: list[str], hits: set[str]) -> float:
    """The part of the text that is in paragraphs found in ``hits``."""
    total = sum(len(p) for p in paras)
    return sum(len(p) for p in paras if p in hits) / total if total else 0.0


def _link_density(tree: Any) -> float:
    mains = tree.xpath("//main")
    root = mains[0] if len(mains) == 1 else tree.find("body")
    if root is None:
        return 0.0
    root = copy.deepcopy(root)
    drop = ".//nav|.//header|.//footer|.//aside|.//form|.//script|.//style|.//noscript"
    for element in root.xpath(drop):
        element.drop_tree()
    total = len(collapse(root.text_content()))
    links = sum(len(collapse(a.text_content())) for a in root.iter("a"))
    return links / total if total else 0.0


# -- metadata ------------------------------------------------------------------------------


def _meta(tree: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for element in tree.iter("meta"):
        key = element.get("property") or element.get("name") or element.get("itemprop")
        if key and element.get("content"):
            found.setdefault(key.strip().lower(), element.get("content").strip())
    return found


def _json_ld(tree: Any) -> dict[str, Any]:
    """The first JSON-LD object that carries article dates or access information."""
    for script in tree.xpath("//script[@type='application/ld+json']"):
        try:
            data = json.loads(script.text or "")
        except ValueError:
            continue
        for item in _ld_items(data):
            if {"datePublished", "dateModified", "isAccessibleForFree"} & item.keys():
                return item
    return {}


def _ld_items(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _ld_items(item)
    elif isinstance(data, dict):
        yield data
        yield from _ld_items(data.get("@graph"))


def _itemprop(tree: Any, prop: str) -> str | None:
    for element in tree.xpath(f"//*[@itemprop='{prop}']{_OUTSIDE_CHROME}"):
        value = element.get("datetime") or element.get("content")
        if value:
            return str(value)
    return None


def _first_date(*values: Any) -> datetime | None:
    for value in values:
        if not isinstance(value, str):
            continue
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            continue
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def _byline(tree: Any) -> str | None:
    """The first element classed as a byline, if it reads like one (no date in it)."""
    found = tree.xpath(f"(//body//*[contains(@class, 'byline')]{_OUTSIDE_CHROME})[1]")
    if not found:
        return None
    text = re.sub(r"^by\s+", "", collapse(found[0].text_content()), flags=re.I)
    return text if 0 < len(text) <= 100 and not any(c.isdigit() for c in text) else None


def _canonical(tree: Any, url: str) -> str:
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            candidate = urljoin(url, link.get("href").strip())
            if urlsplit(candidate).scheme in {"http", "https"} and _site(candidate) == _site(url):
                return candidate
            return url
    return url


def _site(url: str) -> str:
    return extract_domain(url) or (urlsplit(url).hostname or "")


def _unusable(reason: str, url: str, what: str) -> UnusableInput:
    return UnusableInput(reason, f"The page at {url} {what}.")
