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
from daemon.ingest import Identity

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
    raw: bytes = b""  # the fetched body: check.body_sha256 is its hash
    cursor: dict[str, Any] | None = None  # new cursor to store on success
    identities: list[Identity] | None = None  # the observations', if already worked out


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
    return Found(parsed.observations, "feed/1", result.body, identities=parsed.annotations)


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
    for ref in listing.versions:
        if ref.label not in known and ref.label not in have:
            have.update(_version_texts(tools, ref.url, ref, listing))
    first = listing.versions[0]
    for label, url in listing.referenced.items():
        if label not in known and label not in have:
            provisional = changelog.VersionRef(
                label=label, observed_at=first.observed_at, title=None, url=url
            )
            have.update(_version_texts(tools, url, provisional, listing))
    fresh = sorted(
        (o for label, o in have.items() if label not in known),
        key=lambda o: (o.source_observed_at, changelog.label_order(o.source_version or "")),
    )
    cursor.update(
        dialect=listing.dialect,
        labels=sorted(known | {o.source_version or "" for o in fresh}, key=changelog.label_order),
        article_id=article_id(canonical_url(listing.article_url)),
    )
    observations = [_with_identity(o, listing) for o in fresh]
    return Found(observations, f"changelog/{listing.dialect}/1", result.body, cursor)


def _version_texts(
    tools: Tools, url: str | None, ref: changelog.VersionRef, listing: changelog.Listing
) -> dict[str, Observation]:
    """The version ``ref`` from its own page; a diff page gives both of its sides."""
    if not url:
        raise UnusableInput("no-version-link", f"version {ref.label} has no link to its text")
    fetched = tools.http.fetch(url)
    content_type = fetched.headers.get("content-type")
    kind = changelog.detect_page(fetched.body, url=fetched.url, content_type=content_type)
    if kind.kind == changelog.DIFF:
        sides = changelog.parse_listing(fetched.body, url=fetched.url, content_type=content_type)
        found = {o.source_version: o for o in sides.observations if o.source_version}
        if ref.label in found:
            return found
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
