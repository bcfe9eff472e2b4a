"""NewsDiffs: the "Change Log" page, its Atom feed and the JSON view of one version.

What each page gives:

- Change Log ``/article-history/<url>``: ``<h1>Title (SOURCE), Change Log</h1>``, the
  original URL as the first ``<h3>`` link, and a table whose rows link each headline to
  ``/json/view/ID`` beside its "Date/Time EST Archived": US Eastern wall-clock time,
  daylight saving included, converted here to UTC;
- Atom ``/feed/article-history/<url>``: the original URL as the feed's alternate link,
  the source as its author, one entry per change linking to ``/diff/OLD/NEW/...``; the
  entry is version NEW. Dates carry their offset. The first version is only the OLD side
  of the oldest diff: the feed gives no time for it;
- JSON view ``/json/view/ID``: ``title``, ``byline``, ``date`` (Eastern, no offset),
  ``text`` (paragraphs separated by blank lines).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.changelog import (
    FEED,
    JSON_VIEW,
    NEWSDIFFS,
    Element,
    Listing,
    Page,
    PageOrigin,
    VersionRef,
    check_label,
    collapse,
    decode_json,
    feed_entry_paragraphs,
    make_listing,
    parse_html,
    parse_human_time,
    parse_iso_time,
    read_feed,
    require_closed,
    split_paragraphs,
)
from adapters.errors import UnusableInput
from adapters.observation import Observation

_VIEW_PATH = re.compile(r"/json/view/(\d+)/?$")
_DIFF_PATH = re.compile(r"/diff/(\d+)/(\d+)(?:/|$)")
_HEADING = re.compile(r"^(?P<title>.*?)\s*\((?P<source>[^()]+)\)\s*,?\s*Change Log$", re.I)


def parse_listing(page: Page) -> Listing:
    if page.kind.kind == FEED:
        return _listing_from_feed(page)
    doc = parse_html(page.text)
    origin = PageOrigin(
        dialect=NEWSDIFFS,
        article_url=_article_url(doc, page.url),
        source_name=_source(doc),
        page_url=page.url,
    )
    return make_listing(origin, _table_refs(doc, page.url))


def parse_version(page: Page, ref: VersionRef, listing: Listing) -> Observation:
    if page.kind.kind != JSON_VIEW:
        raise UnusableInput("not-a-version-page", f"{page.url} does not hold a version's text")
    view = decode_json(page)
    if not isinstance(view, dict) or not isinstance(view.get("text"), str):
        raise UnusableInput("unrecognised-changelog", f"{page.url} is not a NewsDiffs JSON view")
    named = _VIEW_PATH.search(urlsplit(page.url).path)
    if named:
        check_label(named.group(1), ref, page.url)
    return PageOrigin.of(listing, page.url).observation(
        label=ref.label,
        observed_at=_view_time(view.get("date"), page.url) or ref.observed_at,
        title=_string(view.get("title")) or ref.title,
        paragraphs=split_paragraphs(view["text"]),
        byline=_string(view.get("byline")),
    )


def _string(value: Any) -> str | None:
    return collapse(value) or None if isinstance(value, str) else None


def _view_time(value: Any, url: str) -> datetime | None:
    return parse_iso_time(value, url, naive=eastern_to_utc) if isinstance(value, str) else None


# --- Change Log page -----------------------------------------------------------------


def _article_url(doc: Element, url: str) -> str:
    for heading in doc.find_all("h3"):
        link = heading.find("a")
        href = link.attrs.get("href", "").strip() if link else ""
        if urlsplit(href).scheme in ("http", "https"):
            return href
    raise UnusableInput("no-article-url", f"{url} does not name the original article")


def _source(doc: Element) -> str | None:
    heading = doc.find("h1")
    match = _HEADING.match(heading.text()) if heading else None
    return match.group("source").strip().lower() if match else None


def _table_refs(doc: Element, url: str) -> list[VersionRef]:
    table = next((t for t in doc.find_all("table") if _view_links(t)), None)
    if table is None:
        raise UnusableInput("no-versions", f"{url} links to no version")
    require_closed(table, url, "version table")
    # Rows without a version link are headings; a row with one must be whole.
    return [_row_ref(tr, url) for tr in table.find_all("tr") if _view_links(tr)]


def _view_links(element: Element) -> list[tuple[Element, str]]:
    """(link, version id) for each link to a JSON view."""
    return [
        (a, found.group(1))
        for a in element.find_all("a")
        if (found := _VIEW_PATH.search(a.attrs.get("href", "")))
    ]


def _row_ref(tr: Element, url: str) -> VersionRef:
    (link, label), cells = _view_links(tr)[0], tr.cells()
    if len(cells) < 2:
        raise UnusableInput("bad-row", f"{url}: a version row lacks its archive time")
    return VersionRef(
        label=label,
        observed_at=_cell_time(cells[1], url),
        title=link.text() or None,
        url=urljoin(url, link.attrs["href"]),
    )


def _cell_time(cell: Element, url: str) -> datetime:
    stamp = cell.find("time")
    if stamp is not None and stamp.attrs.get("datetime"):
        return parse_iso_time(stamp.attrs["datetime"], url, naive=eastern_to_utc)
    return eastern_to_utc(parse_human_time(cell.text(), url))


# --- Atom feed -----------------------------------------------------------------------


def _listing_from_feed(page: Page) -> Listing:
    feed = read_feed(page)
    alternate = [
        link.get("href", "")
        for link in feed.feed.get("links", [])
        if link.get("rel", "alternate") == "alternate"
    ]
    if not alternate or not alternate[0]:
        raise UnusableInput("no-article-url", f"{page.url} does not name the original article")
    author = feed.feed.get("author_detail", {}).get("name") or feed.feed.get("author")
    origin = PageOrigin(
        dialect=NEWSDIFFS,
        article_url=alternate[0].strip(),
        source_name=collapse(author).lower() or None if author else None,
        page_url=page.url,
    )
    refs = [_entry_ref(entry, page.url) for entry in feed.entries]
    observations = [
        origin.observation(label=r.label, observed_at=r.observed_at, title=r.title, paragraphs=p)
        for r, entry in zip(refs, feed.entries, strict=True)
        if (p := feed_entry_paragraphs(entry))
    ]
    return make_listing(origin, refs, observations, _diff_predecessors(feed.entries, page.url))


def _diff_predecessors(entries: list[Any], url: str) -> dict[str, str]:
    """The old side of each entry's diff, readable at its JSON view (which has its date)."""
    found: dict[str, str] = {}
    for entry in entries:
        link = entry.get("link", "") or entry.get("id", "")
        match = _DIFF_PATH.search(urlsplit(link).path)
        if match:
            found.setdefault(match.group(1), urljoin(url, f"/json/view/{match.group(1)}"))
    return found


def _entry_ref(entry: Any, url: str) -> VersionRef:
    link = entry.get("link", "") or entry.get("id", "")
    path = urlsplit(link).path
    diff, view = _DIFF_PATH.search(path), _VIEW_PATH.search(path)
    label = diff.group(2) if diff else view.group(1) if view else None
    observed_at = _entry_time(entry, url)
    if label is None or observed_at is None:
        raise UnusableInput("bad-row", f"{url}: an entry lacks its version id or date")
    return VersionRef(
        label=label,
        observed_at=observed_at,
        title=collapse(entry.get("title", "")) or None,
        url=urljoin(url, f"/json/view/{label}"),
    )


def _entry_time(entry: Any, url: str) -> datetime | None:
    """The entry's own date string: feedparser would take a date without offset as UTC."""
    raw = (entry.get("published") or entry.get("updated") or "").strip()
    if not raw:
        return None
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return parse_iso_time(raw, url, naive=eastern_to_utc)
    return eastern_to_utc(moment) if moment.tzinfo is None else moment.astimezone(UTC)


# --- US Eastern time ------------------------------------------------------------------


def eastern_to_utc(local: datetime) -> datetime:
    """US Eastern wall-clock time (NewsDiffs' "EST", which follows daylight saving) to UTC."""
    try:
        return local.replace(tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
    except ZoneInfoNotFoundError:  # a host without tzdata: the rules in force since 2007
        return (local - us_eastern_offset(local)).replace(tzinfo=UTC)


def us_eastern_offset(local: datetime) -> timedelta:
    start = _nth_sunday(local.year, 3, 2) + timedelta(hours=2)
    end = _nth_sunday(local.year, 11, 1) + timedelta(hours=2)
    return timedelta(hours=-4 if start <= local.replace(tzinfo=None) < end else -5)


def _nth_sunday(year: int, month: int, n: int) -> datetime:
    first = datetime(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))
