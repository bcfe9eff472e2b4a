"""News Sniffer: the article page (version table), version page, diff page and RSS.

What each page gives (times are UTC on every page):

- article page ``/articles/ID``: the original URL (``<link title="Original article">`` or
  ``cite.article_url``), the source (``<cite>``), the count ("changed <var>3</var>
  times") and a table whose rows link each version label to ``/articles/ID/versions/V``;
- version page: "Version N of M." followed by the version's paragraphs;
- diff page ``/articles/ID/diff/A/B``: two columns; version A's text is the left column
  without its ``<ins>``, version B's the right column without its ``<del>``;
- RSS: one item per change, "vN: title" linking to the diff that ends at N. The first
  version is the left side of the oldest diff only: the feed gives no time for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from adapters.changelog import (
    DIFF,
    FEED,
    NEWSSNIFFER,
    Element,
    Listing,
    Page,
    PageOrigin,
    VersionRef,
    assume_utc,
    check_label,
    collapse,
    feed_entry_paragraphs,
    make_listing,
    parse_html,
    parse_human_time,
    parse_iso_time,
    read_feed,
    require_closed,
    struct_time_utc,
)
from adapters.errors import UnusableInput
from adapters.normalize import canonical_url
from adapters.observation import Observation

_VERSION_OF = re.compile(r"^Version\s+(\d+)\s+of\s+(\d+)\.?$", re.I)
_VERSION_HEADER = re.compile(r"Version\s+(\d+)", re.I)
_CHANGE_COUNT = re.compile(r"has changed\s+(\d+)\s+times?", re.I)
_FEED_ABOUT = re.compile(r"Changes to the\s+(\S+)\s+article\s+(\S+)", re.I)
_ITEM_LABEL = re.compile(r"^v(\d+):\s*")
_DIFF_PATH = re.compile(r"/diff/(\d+)/(\d+)/?$")
_COLUMNS = {"version": 0, "created_at": 1, "title": 3}


@dataclass(frozen=True, slots=True)
class _Side:
    """One column of a diff page: a version in full."""

    label: str
    observed_at: datetime
    title: str | None
    paragraphs: list[str]

    @classmethod
    def of(
        cls,
        label: str,
        time_cell: Element,
        title_cells: list[Element],
        cells: list[Element],
        hidden: str,  # the other side's edits: <ins> on the old side, <del> on the new
        url: str,
    ) -> _Side:
        title = title_cells[0].text(skip=(hidden,)) if title_cells else ""
        return cls(
            label=label,
            observed_at=_cell_time(time_cell, url),
            title=title or None,
            paragraphs=[text for cell in cells if (text := cell.text(skip=(hidden,)))],
        )


def parse_listing(page: Page) -> Listing:
    if page.kind.kind == FEED:
        return _listing_from_feed(page)
    doc = parse_html(page.text)
    origin = _origin(doc, page.url)
    if page.kind.kind == DIFF:
        sides = _diff_sides(doc, page.url)
        refs = [_side_ref(side, page.url) for side in sides]
        return make_listing(origin, refs, [_side_observation(origin, s) for s in sides])
    return make_listing(origin, _table_refs(doc, page.url))


def parse_version(page: Page, ref: VersionRef, listing: Listing) -> Observation:
    doc = parse_html(page.text)
    _check_article(doc, page.url, listing)
    origin = PageOrigin.of(listing, page.url)
    if page.kind.kind == DIFF:
        return _side_observation(origin, _side_for(_diff_sides(doc, page.url), ref, page.url))
    return _version_page(doc, origin, ref)


# --- article facts shared by the HTML pages ------------------------------------------


def _origin(doc: Element, url: str) -> PageOrigin:
    article_url = _article_url(doc)
    if article_url is None:
        raise UnusableInput("no-article-url", f"{url} does not name the original article")
    return PageOrigin(
        dialect=NEWSSNIFFER, article_url=article_url, source_name=_source(doc), page_url=url
    )


def _article_url(doc: Element) -> str | None:
    for link in doc.find_all("link"):
        rel = set(link.attrs.get("rel", "").split())
        if link.attrs.get("href") and (
            link.attrs.get("title") == "Original article" or {"external", "author"} <= rel
        ):
            return link.attrs["href"].strip()
    cite = doc.find("cite", "article_url")
    anchor = cite.find("a") if cite else None
    return (anchor.attrs.get("href", "").strip() or None) if anchor else None


def _source(doc: Element) -> str | None:
    for cite in doc.find_all("cite"):
        if "article_url" not in cite.classes and cite.text():
            return cite.text().lower()
    return None


def _check_article(doc: Element, url: str, listing: Listing) -> None:
    named = _article_url(doc)
    if named and canonical_url(named) != canonical_url(listing.article_url):
        raise UnusableInput(
            "article-mismatch", f"{url} is about {named}, not {listing.article_url}"
        )


# --- article page: the version table -------------------------------------------------


def _table_refs(doc: Element, url: str) -> list[VersionRef]:
    table = next((t for t in doc.find_all("table") if t.find("th", "version")), None)
    if table is None:
        raise UnusableInput("unrecognised-changelog", f"{url} has no version table")
    require_closed(table, url, "version table")
    columns = _columns(table)
    rows = [cells for tr in table.find_all("tr") if (cells := _data_cells(tr))]
    refs = [_row_ref(cells, columns, url) for cells in rows]
    _check_count(doc, len(refs), url)
    return refs


def _columns(table: Element) -> dict[str, int]:
    header = next((tr for tr in table.find_all("tr") if tr.find("th")), None)
    found = {
        name: index
        for index, th in enumerate(header.cells() if header else [])
        for name in th.classes
        if name in _COLUMNS
    }
    return {**_COLUMNS, **found} if "version" in found else dict(_COLUMNS)


def _data_cells(tr: Element) -> list[Element]:
    cells = tr.cells()
    return cells if cells and all(c.tag == "td" for c in cells) else []


def _row_ref(cells: list[Element], columns: dict[str, int], url: str) -> VersionRef:
    def cell(name: str) -> Element | None:
        return cells[columns[name]] if columns[name] < len(cells) else None

    version, created = cell("version"), cell("created_at")
    link = version.find("a") if version else None
    if link is None or created is None or not link.text().isdigit():
        raise UnusableInput("bad-row", f"{url}: a version row lacks its label, link or time")
    title = cell("title")
    return VersionRef(
        label=link.text(),
        observed_at=_cell_time(created, url),
        title=(title.text() or None) if title else None,
        url=urljoin(url, link.attrs.get("href", "")),
    )


def _cell_time(cell: Element, url: str) -> datetime:
    stamp = cell.find("time")
    if stamp is not None and stamp.attrs.get("datetime"):
        return parse_iso_time(stamp.attrs["datetime"], url, naive=assume_utc)
    return assume_utc(parse_human_time(cell.text(), url))


def _check_count(doc: Element, found: int, url: str) -> None:
    match = _CHANGE_COUNT.search(doc.text())
    if match and found < int(match.group(1)):
        raise UnusableInput(
            "truncated", f"{url} says it has {match.group(1)} versions but lists {found}"
        )


# --- version page --------------------------------------------------------------------


def _version_page(doc: Element, origin: PageOrigin, ref: VersionRef) -> Observation:
    found = next(((p, m) for p in doc.find_all("p") if (m := _VERSION_OF.match(p.text()))), None)
    if found is None:
        raise UnusableInput("unrecognised-changelog", f"{origin.page_url} has no 'Version N of M'")
    (marker, match), holder = found, found[0].parent or found[0]
    label, total = match.groups()
    check_label(label, ref, origin.page_url)
    if int(label) >= int(total):
        raise UnusableInput("bad-version", f"{origin.page_url}: version {label} of {total}?")
    require_closed(holder, origin.page_url, "version text")
    heading = doc.find("h1")
    return origin.observation(
        label=label,
        observed_at=ref.observed_at,
        title=(heading.text() if heading else None) or ref.title,
        paragraphs=_paragraphs_after(marker),
    )


def _paragraphs_after(marker: Element) -> list[str]:
    siblings = marker.parent.children if marker.parent else []
    after = siblings[siblings.index(marker) + 1 :]
    return [t for e in after if isinstance(e, Element) and e.tag == "p" and (t := e.text())]


# --- diff page -----------------------------------------------------------------------


def _diff_sides(doc: Element, url: str) -> tuple[_Side, _Side]:
    table = doc.find("table", "version_diff")
    if table is None:
        raise UnusableInput("unrecognised-changelog", f"{url} has no diff table")
    require_closed(table, url, "diff table")
    labels = [
        found.group(1)
        for th in table.find_all("th", "version")
        if (found := _VERSION_HEADER.search(th.text()))
    ]
    times = table.find_all("th", "time")
    if len(labels) != 2 or len(times) != 2:
        raise UnusableInput("bad-diff", f"{url}: the diff does not name two versions and times")
    titles = table.find_all("th", "title")
    rows = [cells for tr in table.find_all("tr") if len(cells := _data_cells(tr)) == 2]
    old = _Side.of(labels[0], times[0], titles[0:1], [r[0] for r in rows], "ins", url)
    new = _Side.of(labels[1], times[1], titles[1:2], [r[1] for r in rows], "del", url)
    return old, new


def _side_for(sides: tuple[_Side, _Side], ref: VersionRef, url: str) -> _Side:
    matching = [side for side in sides if side.label == ref.label]
    if not matching:
        labels = " and ".join(side.label for side in sides)
        raise UnusableInput("version-mismatch", f"{url} holds versions {labels}, not {ref.label}")
    return matching[0]


def _side_ref(side: _Side, url: str) -> VersionRef:
    return VersionRef(label=side.label, observed_at=side.observed_at, title=side.title, url=url)


def _side_observation(origin: PageOrigin, side: _Side) -> Observation:
    return origin.observation(
        label=side.label,
        observed_at=side.observed_at,
        title=side.title,
        paragraphs=side.paragraphs,
    )


# --- RSS of versions -----------------------------------------------------------------


def _listing_from_feed(page: Page) -> Listing:
    feed = read_feed(page)
    about = _FEED_ABOUT.search(feed.feed.get("description", "") or "")
    if about is None:
        raise UnusableInput("no-article-url", f"{page.url} does not name the original article")
    origin = PageOrigin(
        dialect=NEWSSNIFFER,
        article_url=about.group(2),
        source_name=about.group(1).lower(),
        page_url=page.url,
    )
    refs = [_entry_ref(entry, page.url) for entry in feed.entries]
    observations = _feed_observations(origin, refs, feed.entries)
    return make_listing(origin, refs, observations, _diff_predecessors(refs))


def _diff_predecessors(refs: list[VersionRef]) -> dict[str, str]:
    """The old side of each item's diff: its text and time are on that diff page."""
    found: dict[str, str] = {}
    for ref in refs:
        match = _DIFF_PATH.search(urlsplit(ref.url or "").path)
        if match and ref.url:
            found.setdefault(match.group(1), ref.url)
    return found


def _entry_ref(entry: Any, url: str) -> VersionRef:
    title = collapse(entry.get("title", ""))
    link = urljoin(url, entry.get("link", "") or entry.get("id", ""))
    label = _ITEM_LABEL.match(title) or _DIFF_PATH.search(link)
    observed_at = struct_time_utc(entry.get("published_parsed") or entry.get("updated_parsed"))
    if label is None or observed_at is None:
        raise UnusableInput("bad-row", f"{url}: an item lacks its version label or date")
    number = label.group(1) if label.re is _ITEM_LABEL else label.group(2)
    return VersionRef(
        label=number,
        observed_at=observed_at,
        title=_ITEM_LABEL.sub("", title) or None,
        url=link or None,
    )


def _feed_observations(
    origin: PageOrigin, refs: list[VersionRef], entries: list[Any]
) -> list[Observation]:
    return [
        origin.observation(
            label=ref.label, observed_at=ref.observed_at, title=ref.title, paragraphs=paragraphs
        )
        for ref, entry in zip(refs, entries, strict=True)
        if (paragraphs := feed_entry_paragraphs(entry))
    ]
