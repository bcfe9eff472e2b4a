"""How each kind of source is checked: fetch, extract, and the observations to record.

Each handler fills a ``Check`` and returns the observations (oldest first) that the
poller records in one append, so a check imports all of its versions or none of them.
Failures are raised (fetch errors, ``UnusableInput``) and become a failed check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from adapters import changelog
from adapters.errors import UnusableInput
from adapters.feed import FeedParserPool
from adapters.http import FetchResult, HttpClient
from adapters.normalize import article_id, canonical_url
from adapters.observation import Observation
from daemon import policy as rules

if TYPE_CHECKING:
    from daemon.schedule import Check


@dataclass(frozen=True, slots=True)
class Tools:
    http: HttpClient
    parser: FeedParserPool
    clock: Callable[[], datetime]


@dataclass(slots=True)
class Found:
    observations: list[Observation] = field(default_factory=list)
    adapter: str = ""
    raw: bytes = b""
    cursor: dict[str, Any] | None = None  # new cursor to store on success


def fetch(tools: Tools, check: Check) -> FetchResult | None:
    """The conditional GET every kind starts with; None when nothing changed."""
    source = check.source
    result = tools.http.fetch(
        source["url"], etag=source["etag"], last_modified=source["last_modified"]
    )
    check.status, check.size = result.status, len(result.body)
    check.etag = result.etag or source["etag"]
    check.last_modified = result.last_modified or source["last_modified"]
    if result.not_modified:
        check.outcome = "not-modified"
        return None
    check.body_sha256 = hashlib.sha256(result.body).hexdigest()
    if check.body_sha256 == source["body_sha256"]:
        check.outcome = "unchanged"  # the same bytes again: not parsed again
        return None
    return result


def check_feed(tools: Tools, check: Check, policy: rules.Policy) -> Found | None:
    result = fetch(tools, check)
    if result is None:
        return None
    parsed = tools.parser.parse(result.body, result.url, result.headers)
    now = tools.clock()
    hint = rules.server_hint(result.headers, now, parsed.ttl_seconds)
    check.interval = rules.feed_interval(policy, parsed.entries_published, now, hint)
    return Found(parsed.observations, "feed/1", result.body)


def check_page(tools: Tools, check: Check, policy: rules.Policy) -> Found | None:
    result = fetch(tools, check)
    if result is None:
        return None
    from adapters.page import parse_page  # trafilatura is heavy: load it only for pages

    observation = parse_page(result.body, url=result.url, headers=result.headers)
    cursor = {"article_id": article_id(canonical_url(observation.url or result.url))}
    return Found([observation], "page/1", result.body, cursor)


def check_changelog(tools: Tools, check: Check, policy: rules.Policy) -> Found | None:
    """Import every version the tracker lists that this source has not imported yet,
    following version links through the one HTTP client; all or nothing."""
    result = fetch(tools, check)
    if result is None:
        return None
    content_type = result.headers.get("content-type")
    listing = changelog.parse_listing(result.body, url=result.url, content_type=content_type)
    cursor = dict(check.source.get("cursor") or {})
    if cursor.get("dialect") not in (None, listing.dialect):
        raise UnusableInput(
            "dialect-changed",
            f"{result.url} was a {cursor['dialect']} page and is now {listing.dialect}",
        )
    known = set(cursor.get("labels", []))
    have = {o.source_version: o for o in listing.observations if o.source_version}
    fresh = [ref for ref in listing.versions if ref.label not in known]
    for ref in fresh:
        if ref.label not in have:
            have.update(_version_page(tools, ref, listing))
    observations = [_with_identity(have[r.label], listing) for r in fresh]
    cursor.update(
        dialect=listing.dialect,
        labels=sorted(known | {r.label for r in fresh}, key=changelog.label_order),
        article_id=article_id(canonical_url(listing.article_url)),
    )
    return Found(observations, f"changelog/{listing.dialect}/1", result.body, cursor)


def _version_page(
    tools: Tools, ref: changelog.VersionRef, listing: changelog.Listing
) -> dict[str, Observation]:
    if not ref.url:
        raise UnusableInput("no-version-link", f"version {ref.label} has no link to its text")
    fetched = tools.http.fetch(ref.url)
    observation = changelog.parse_version(fetched.body, url=fetched.url, ref=ref, listing=listing)
    return {ref.label: observation}


def _with_identity(observation: Observation, listing: changelog.Listing) -> Observation:
    """Every imported version is identified by the original article's URL."""
    if observation.url == listing.article_url:
        return observation
    return replace(observation, url=listing.article_url)


HANDLERS: dict[str, Callable[[Tools, Check, rules.Policy], Found | None]] = {
    "feed": check_feed,
    "page": check_page,
    "changelog": check_changelog,
}
