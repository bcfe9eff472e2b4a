"""Changelog adapter: pages on which a revision tracker lists the versions of one article.

Two layers, because fetching happens elsewhere. :func:`parse_listing` reads a page that
lists versions (News Sniffer article page, diff page and RSS; NewsDiffs "Change Log" page
and its Atom feed) into a :class:`Listing`: one :class:`VersionRef` per version, plus
complete observations for the versions whose full text is on that page. The caller
fetches each ``VersionRef.url`` it lacks and hands the body to :func:`parse_version`
(News Sniffer version or diff page, NewsDiffs JSON view).

A page cut short must never pass for a shorter history, so:

- an HTML page counts only if the element holding the versions (version table, diff
  table, the cell holding a version's paragraphs) ended before the document did;
- a News Sniffer page that states its version count ("changed <var>3</var> times",
  "Version N of M") must not list fewer;
- a feed must be well-formed XML, and a JSON view must decode;
- a listing with no versions, or with one label twice, is refused.

The dialect modules (``changelog_newssniffer``, ``changelog_newsdiffs``) use the shared
pieces below; this module imports them only inside the dispatching functions, which
breaks the import cycle.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from types import ModuleType
from typing import Any

import feedparser

from adapters.errors import UnusableInput
from adapters.observation import Observation

NEWSSNIFFER = "newssniffer"
NEWSDIFFS = "newsdiffs"

# Page kinds: what a page is, which decides the parser.
LISTING = "listing"  # News Sniffer version table, NewsDiffs "Change Log"
DIFF = "diff"  # News Sniffer diff page: a listing of two versions, both in full
FEED = "feed"  # News Sniffer RSS, NewsDiffs Atom
VERSION = "version"  # News Sniffer version page
JSON_VIEW = "json-view"  # NewsDiffs /json/view/ID


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionRef:
    """One version as a listing names it."""

    label: str  # the tracker's own version label: "0", "1" (News Sniffer), "61201" (NewsDiffs)
    observed_at: datetime  # aware UTC: when the tracker saw this version
    title: str | None
    url: str | None  # absolute URL of the page with this version's full text


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """What a tracker's page says about one article's versions."""

    dialect: str  # NEWSSNIFFER | NEWSDIFFS
    article_url: str  # the original article's URL, as the tracker names it
    source_name: str | None  # the tracker's publisher label ("guardian")
    versions: list[VersionRef]  # oldest first
    observations: list[Observation]  # versions given in full on this very page
    # Versions the page names only as the old side of a diff (a feed's first version):
    # label -> URL of a page holding its text and time. Not in ``versions``.
    referenced: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageKind:
    dialect: str
    kind: str  # LISTING | DIFF | FEED | VERSION | JSON_VIEW

    @property
    def is_listing(self) -> bool:
        return self.kind in (LISTING, DIFF, FEED)

    @property
    def is_version(self) -> bool:
        return self.kind in (VERSION, DIFF, JSON_VIEW)


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A fetched page, decoded and classified."""

    body: bytes
    text: str
    url: str
    kind: PageKind


# --- public API --------------------------------------------------------------------


def detect_dialect(body: bytes, *, url: str, content_type: str | None = None) -> str:
    """``"newssniffer"`` or ``"newsdiffs"``; UnusableInput("unrecognised-changelog") else."""
    return detect_page(body, url=url, content_type=content_type).dialect


def detect_page(body: bytes, *, url: str, content_type: str | None = None) -> PageKind:
    return read_page(body, url=url, content_type=content_type).kind


def parse_listing(body: bytes, *, url: str, content_type: str | None = None) -> Listing:
    page = read_page(body, url=url, content_type=content_type)
    if not page.kind.is_listing:
        raise UnusableInput(
            "not-a-listing",
            f"{url} is a {page.kind.dialect} {page.kind.kind} page; use parse_version",
        )
    with _cut_short_is_truncated(page):
        listing: Listing = _dialect_module(page.kind.dialect).parse_listing(page)
    return listing


def parse_version(body: bytes, *, url: str, ref: VersionRef, listing: Listing) -> Observation:
    """The full text of the version ``ref`` of ``listing``'s article, from its own page."""
    page = read_page(body, url=url)
    if not page.kind.is_version:
        raise UnusableInput("not-a-version-page", f"{url} does not hold a version's full text")
    if page.kind.dialect != listing.dialect:
        raise UnusableInput(
            "dialect-mismatch",
            f"{url} is a {page.kind.dialect} page, the listing {listing.dialect}",
        )
    with _cut_short_is_truncated(page):
        observation: Observation = _dialect_module(page.kind.dialect).parse_version(
            page, ref, listing
        )
    return observation


@contextmanager
def _cut_short_is_truncated(page: Page) -> Iterator[None]:
    """An HTML page that lacks a part it needs and never reaches ``</html>`` was cut short."""
    try:
        yield
    except UnusableInput as exc:
        structural = exc.reason in ("no-versions", "no-article-url", "unrecognised-changelog")
        html = page.kind.kind in (LISTING, DIFF, VERSION)
        if structural and html and not _HTML_END.search(page.text):
            raise UnusableInput("truncated", f"{exc} (the page never ends: cut short?)") from exc
        raise


def _dialect_module(dialect: str) -> ModuleType:
    import adapters.changelog_newsdiffs as newsdiffs
    import adapters.changelog_newssniffer as newssniffer

    return newssniffer if dialect == NEWSSNIFFER else newsdiffs


# --- reading and classifying a page -------------------------------------------------

_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF)\b")
_HTML_SIGNS = (
    (re.compile(r"class=[\"']?version_diff\b"), PageKind(dialect=NEWSSNIFFER, kind=DIFF)),
    (re.compile(r"Version\s+\d+\s+of\s+\d+"), PageKind(dialect=NEWSSNIFFER, kind=VERSION)),
    (
        re.compile(r"/articles/\d+/versions/\d+|<th[^>]*class=[\"']?version\b"),
        PageKind(dialect=NEWSSNIFFER, kind=LISTING),
    ),
    (
        re.compile(r"<h1[^>]*>[^<]*Change\s+Log\s*</h1>|Change\s+Log[\s\S]*?/json/view/\d+"),
        PageKind(dialect=NEWSDIFFS, kind=LISTING),
    ),
)
_FEED_SIGNS = (
    (re.compile(r"/articles/\d+/diff/\d+/\d+|newssniffer"), NEWSSNIFFER),
    (re.compile(r"/article-history/|/json/view/\d+|/diff/\d+/\d+/|newsdiffs"), NEWSDIFFS),
)
# Traces of a tracker's page that may survive when the page is cut before its versions.
_TRACKER_TRACES = (
    (re.compile(r"News Sniffer|title=[\"']Original article|/articles/\d+(?:\.rss|/)"), NEWSSNIFFER),
    (re.compile(r"NewsDiffs|/article-history/|/json/view/\d+"), NEWSDIFFS),
)
_HTML_END = re.compile(r"</html>\s*$", re.I)
_JSON_VIEW_KEY = re.compile(r"\"(?:title|text|byline|date)\"\s*:")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)


def read_page(body: bytes, *, url: str, content_type: str | None = None) -> Page:
    if not body.strip():
        raise UnusableInput("empty", f"{url} returned an empty body")
    if _FEED_ROOT.search(body[:4096]):
        text = body.decode("utf-8", errors="replace")  # only for sniffing: feedparser decodes
        return Page(body=body, text=text, url=url, kind=_feed_kind(text, url))
    text = _decode(body, url, content_type)
    return Page(body=body, text=text, url=url, kind=_text_kind(text, url))


def _decode(body: bytes, url: str, content_type: str | None) -> str:
    match = _CHARSET.search(content_type or "")
    charset = match.group(1) if match else "utf-8-sig"
    try:
        return body.decode(charset)
    except UnicodeDecodeError as exc:
        cut = exc.end >= len(body) and "end of data" in exc.reason  # a character cut in two
        reason = "truncated" if cut else "undecodable"
        raise UnusableInput(reason, f"{url} is not valid {charset}: {exc}") from exc
    except LookupError as exc:
        raise UnusableInput("undecodable", f"{url} names an unknown charset {charset}") from exc


def _feed_kind(text: str, url: str) -> PageKind:
    for sign, dialect in _FEED_SIGNS:
        if sign.search(text):
            return PageKind(dialect=dialect, kind=FEED)
    raise _unrecognised(url, "a feed, but not a News Sniffer or NewsDiffs changelog feed")


def _text_kind(text: str, url: str) -> PageKind:
    if text.lstrip().startswith("{"):
        if _JSON_VIEW_KEY.search(text):
            return PageKind(dialect=NEWSDIFFS, kind=JSON_VIEW)
        raise _unrecognised(url, "JSON, but not a NewsDiffs version view")
    for sign, kind in _HTML_SIGNS:
        if sign.search(text):
            return kind
    for sign, dialect in _TRACKER_TRACES:
        if sign.search(text) and not _HTML_END.search(text):
            raise UnusableInput(
                "truncated", f"{url}: a {dialect} page cut short before its versions"
            )
    raise _unrecognised(url, "not a News Sniffer or NewsDiffs page")


def _unrecognised(url: str, what: str) -> UnusableInput:
    return UnusableInput("unrecognised-changelog", f"{url} is {what}")


# --- a small HTML tree on top of html.parser ---------------------------------------

_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
})  # fmt: skip
_INVISIBLE = frozenset({"script", "style", "template", "head"})
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol",
    "p", "pre", "section", "table", "td", "th", "tr", "ul",
})  # fmt: skip
_P_CLOSERS = _BLOCK - {"br", "td", "th", "tr", "li", "dd", "dt"}
# start tag -> (open elements it implicitly ends, elements that stop the search)
_IMPLIED_ENDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "tr": (frozenset({"tr"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "thead": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tbody": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tfoot": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "li": (frozenset({"li"}), frozenset({"ul", "ol"})),
}
_P_END = (frozenset({"p"}), frozenset({"td", "th", "table", "caption", "button"}))
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")  # not \s: a no-break space is text


@dataclass(slots=True, eq=False, repr=False)
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)
    closed: bool = False  # it ended before the document did: not cut short

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag: str, cls: str | None = None) -> list[Element]:
        return [e for e in self.iter() if e.tag == tag and (cls is None or cls in e.classes)]

    def find(self, tag: str, cls: str | None = None) -> Element | None:
        return next(iter(self.find_all(tag, cls)), None)

    def cells(self) -> list[Element]:
        return [c for c in self.children if isinstance(c, Element) and c.tag in ("td", "th")]

    def text(self, skip: Iterable[str] = ()) -> str:
        """The visible text, whitespace collapsed; subtrees tagged ``skip`` left out."""
        parts: list[str] = []
        self._collect(parts, _INVISIBLE | frozenset(skip))
        return collapse("".join(parts))

    def _collect(self, parts: list[str], skip: frozenset[str]) -> None:
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif child.tag not in skip:
                block = child.tag in _BLOCK
                parts.append(" " if block else "")
                child._collect(parts, skip)
                parts.append(" " if block else "")


class _TreeBuilder(HTMLParser):
    """Builds an :class:`Element` tree, ending elements the way browsers imply."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.root.closed = True
        self._open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._end_implied(tag)
        element = Element(tag, {k: v or "" for k, v in attrs}, parent=self._open[-1])
        self._open[-1].children.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                self._pop_to(depth)
                return

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)

    def _end_implied(self, tag: str) -> None:
        ends, stops = _IMPLIED_ENDS.get(tag) or (_P_END if tag in _P_CLOSERS else (None, None))
        if ends is None or stops is None:
            return
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag in ends:
                self._pop_to(depth)
                return
            if self._open[depth].tag in stops:
                return

    def _pop_to(self, depth: int) -> None:
        for element in self._open[depth:]:
            element.closed = True
        del self._open[depth:]


def parse_html(text: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def collapse(text: str) -> str:
    return _HTML_SPACE.sub(" ", text).strip()


def require_closed(element: Element, url: str, what: str) -> None:
    if not element.closed:
        raise UnusableInput("truncated", f"{url}: the {what} never ends; the page was cut short")


# --- feeds ---------------------------------------------------------------------------


def read_feed(page: Page) -> Any:
    """feedparser's result for a well-formed feed (bytes in, never a URL)."""
    parsed = feedparser.parse(page.body)
    problem = parsed.get("bozo_exception")
    if parsed.get("bozo") and problem is not None and "SAX" in type(problem).__name__:
        raise UnusableInput(
            "truncated", f"{page.url}: the feed is not well-formed XML (cut short?): {problem}"
        )
    return parsed


def feed_entry_paragraphs(entry: Any) -> list[str]:
    """Paragraphs of an entry's full text, if it carries any (new side of a diff)."""
    contents = entry.get("content") or []
    html = contents[0].get("value", "") if contents else entry.get("summary", "")
    return html_paragraphs(html or "")


def html_paragraphs(html: str) -> list[str]:
    doc = parse_html(html)
    paragraphs = doc.find_all("p")
    if paragraphs:
        return [t for p in paragraphs if (t := p.text(skip=("del",)))]
    return split_paragraphs(doc.text(skip=("del",)) if "<" in html else html)


def struct_time_utc(value: Any) -> datetime | None:
    return datetime.fromtimestamp(calendar.timegm(value), UTC) if value else None


# --- text, times, labels -------------------------------------------------------------

_BLANK_LINE = re.compile(r"\n[ \t\r\f]*\n")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_HUMAN_TIME = re.compile(
    r"(?P<month>[A-Za-z]{3,})\.?\s+(?P<day>\d{1,2}),?\s+(?P<year>\d{4}),?\s+(?:at\s+)?"
    r"(?:(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?(?:\s*(?P<half>[ap])\.?\s?m\b\.?)?"
    r"|(?P<word>noon|midnight))",
    re.I,
)


def split_paragraphs(text: str) -> list[str]:
    return [p for part in _BLANK_LINE.split(text) if (p := collapse(part))]


def parse_human_time(text: str, url: str) -> datetime:
    """A naive datetime from "December 22, 2017 09:31" or "Dec. 22, 2017, 4:31 a.m."."""
    match = _HUMAN_TIME.search(text)
    month = _MONTHS.get(match.group("month")[:3].lower(), 0) if match else 0
    if match is None or not month:
        raise UnusableInput("bad-time", f"{url}: cannot read the time {text!r}")
    hour, minute = _clock(match)
    return datetime(int(match.group("year")), month, int(match.group("day")), hour, minute)


def _clock(match: re.Match[str]) -> tuple[int, int]:
    if match.group("word"):
        return (12 if match.group("word").lower() == "noon" else 0), 0
    hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
    half = (match.group("half") or "").lower()
    if half:
        hour = hour % 12 + (12 if half == "p" else 0)
    return hour, minute


def parse_iso_time(text: str, url: str, *, naive: Callable[[datetime], datetime]) -> datetime:
    """An ISO 8601 time in UTC; ``naive`` says what a time without offset means."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UnusableInput("bad-time", f"{url}: cannot read the time {text!r}") from exc
    return naive(moment) if moment.tzinfo is None else moment.astimezone(UTC)


def assume_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def label_order(label: str) -> tuple[int, int, str]:
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


# --- assembling results --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PageOrigin:
    """Where observations come from: the article, as the tracker names it, and the page."""

    dialect: str
    article_url: str
    source_name: str | None
    page_url: str

    @classmethod
    def of(cls, listing: Listing, page_url: str) -> PageOrigin:
        return cls(
            dialect=listing.dialect,
            article_url=listing.article_url,
            source_name=listing.source_name,
            page_url=page_url,
        )

    def observation(
        self,
        *,
        label: str,
        observed_at: datetime,
        title: str | None,
        paragraphs: list[str],
        byline: str | None = None,
    ) -> Observation:
        if not paragraphs:
            raise UnusableInput("no-text", f"{self.page_url}: version {label} has no text")
        return Observation(
            title=title or "",
            body="\n\n".join(paragraphs),
            url=self.article_url,
            source_name=self.source_name,
            byline=byline or None,
            channel="changelog",
            source_version=label,
            source_observed_at=observed_at,
            extra={"tracker": self.dialect, "tracker_url": self.page_url},
        )


def make_listing(
    origin: PageOrigin,
    versions: list[VersionRef],
    observations: Iterable[Observation] = (),
    referenced: dict[str, str] | None = None,
) -> Listing:
    """A Listing, oldest version first; refuses an empty listing or a repeated label."""
    if not versions:
        raise UnusableInput("no-versions", f"{origin.page_url} lists no versions")
    labels = [v.label for v in versions]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UnusableInput(
            "duplicate-version", f"{origin.page_url} lists version(s) {repeated} twice"
        )
    return Listing(
        dialect=origin.dialect,
        article_url=origin.article_url,
        source_name=origin.source_name,
        versions=sorted(versions, key=lambda v: (v.observed_at, label_order(v.label))),
        observations=sorted(observations, key=_observation_order),
        referenced={k: v for k, v in (referenced or {}).items() if k not in labels},
    )


def _observation_order(o: Observation) -> tuple[datetime, tuple[int, int, str]]:
    return (
        o.source_observed_at or datetime.min.replace(tzinfo=UTC),
        label_order(o.source_version or ""),
    )


def check_label(page_label: str, ref: VersionRef, url: str) -> None:
    if page_label != ref.label:
        raise UnusableInput(
            "version-mismatch", f"{url} holds version {page_label}, not version {ref.label}"
        )


def decode_json(page: Page) -> Any:
    try:
        return json.loads(page.text)
    except json.JSONDecodeError as exc:
        # A view is one object: text that does not end with its "}" was cut short.
        reason = "malformed" if page.text.rstrip().endswith("}") else "truncated"
        raise UnusableInput(reason, f"{page.url}: the JSON does not decode: {exc}") from exc


__all__ = [
    "NEWSDIFFS",
    "NEWSSNIFFER",
    "Listing",
    "PageKind",
    "VersionRef",
    "detect_dialect",
    "detect_page",
    "parse_listing",
    "parse_version",
]
