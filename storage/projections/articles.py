"""``articles`` (current view) and ``article_versions`` (every version, with validity
intervals so that "as of" questions are plain SQL).

Discoveries, the bulk of any ingest, are buffered and written with one executemany;
the buffer is flushed before anything that reads or updates rows it may hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from storage.db import insert_many
from storage.events import (
    ArticleDiscovered,
    ArticleRestored,
    ArticleRevised,
    ArticleTrackingStopped,
    ArticleVersionEvent,
    ArticleWithdrawn,
    upcast,
)
from storage.schema import article_versions, articles
from storage.store import StoredEvent


class ArticlesProjection:
    name = "articles"
    event_types = frozenset(
        {
            ArticleDiscovered.event_type,
            ArticleRevised.event_type,
            ArticleWithdrawn.event_type,
            ArticleRestored.event_type,
            ArticleTrackingStopped.event_type,
        }
    )

    def apply(self, conn: Connection, batch: Sequence[StoredEvent]) -> None:
        new_articles: list[dict[str, Any]] = []
        new_versions: list[dict[str, Any]] = []
        for stored in batch:
            if stored.event_type == ArticleDiscovered.event_type:
                # the bulk of any ingest: rows straight from the payload, no decoding
                payload = upcast(
                    stored.event_type,
                    stored.schema_version,
                    stored.payload,
                    target=ArticleDiscovered.schema_version,
                )
                new_articles.append(_discovered_article_row(payload))
                new_versions.append(_discovered_version_row(payload, stored.position))
                continue
            event = stored.decode()
            _flush(conn, new_articles, new_versions)
            if isinstance(event, ArticleRevised):
                _revise(conn, event, stored.position)
            elif isinstance(event, ArticleWithdrawn | ArticleRestored | ArticleTrackingStopped):
                status = _STATUS[type(event)]
                conn.execute(
                    update(articles)
                    .where(articles.c.article_id == event.article_id)
                    .values(status=status)
                )
        _flush(conn, new_articles, new_versions)


_STATUS = {
    ArticleWithdrawn: "withdrawn",
    ArticleRestored: "live",
    ArticleTrackingStopped: "tracking-stopped",
}


def _flush(conn: Connection, new_articles: list[Any], new_versions: list[Any]) -> None:
    if new_articles:
        insert_many(conn, articles, new_articles)
        insert_many(conn, article_versions, new_versions)
        new_articles.clear()
        new_versions.clear()


# The two functions below are _article_row and _version_row of an ArticleDiscovered,
# read from its payload (timestamps stay the ISO strings insert_many accepts).


def _discovered_article_row(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "article_id": p["article_id"],
        "article_key": p["article_key"],
        "url": p["url"],
        "source_id": p["source_id"],
        "source_name": p.get("source_name"),
        "title": p["title"],
        "standfirst": p["standfirst"],
        "body": p["body"],
        "byline": p["byline"],
        "published_at": p["published_at"],
        "first_seen_at": p["observed_at"],
        "last_changed_at": p["observed_at"],
        "version_count": 1,
        "status": "live",
    }


def _discovered_version_row(p: dict[str, Any], position: int) -> dict[str, Any]:
    return {
        "article_id": p["article_id"],
        "version": 1,
        "channel": p["channel"],
        "source_id": p["source_id"],
        "title": p["title"],
        "standfirst": p["standfirst"],
        "body": p["body"],
        "byline": p["byline"],
        "content_hash": p["content_hash"],
        "fingerprint": p["fingerprint"],
        "kind": "substantive",
        "changed_fields": None,
        "chars_added": len(p["body"]),
        "chars_removed": 0,
        "observed_at": p["observed_at"],
        "previous_check_at": None,
        "valid_from": p.get("source_observed_at") or p["observed_at"],
        "valid_to": None,
        "source_version": p.get("source_version"),
        "source_observed_at": p.get("source_observed_at"),
        "position": position,
    }


def _revise(conn: Connection, event: ArticleRevised, position: int) -> None:
    """Add a version and fit it into the article's timeline, which is ordered by
    ``valid_from`` whatever the order in which versions arrive: the version whose
    interval covers the new start ends there, and the new version lasts until the
    next start after its own (open if there is none). On a tie, the version that
    arrived later wins from that instant (the earlier one keeps a zero-length
    interval)."""
    aid = event.article_id
    start = _valid_from(event)
    count = conn.execute(
        select(articles.c.version_count).where(articles.c.article_id == aid)
    ).scalar_one()
    version = count + 1
    row = _version_row(event, position, version)
    # The common case: the new version starts at or after the open one, so it closes
    # it and becomes the current version.
    closed = conn.execute(
        update(article_versions)
        .where(article_versions.c.article_id == aid)
        .where(article_versions.c.valid_to.is_(None))
        .where(article_versions.c.valid_from <= start)
        .values(valid_to=start)
    ).rowcount
    if closed:
        conn.execute(insert(article_versions).values(row))
        values = _article_row(event)
        for key in ("article_id", "article_key", "first_seen_at"):
            del values[key]
        values.update(version_count=version, status="live")
        conn.execute(update(articles).where(articles.c.article_id == aid).values(values))
        return
    # A version from before the current one (a tracker's history imported late): it
    # is slotted into the past, and the current view only counts it.
    row["valid_to"] = conn.execute(
        select(func.min(article_versions.c.valid_from))
        .where(article_versions.c.article_id == aid)
        .where(article_versions.c.valid_from > start)
    ).scalar_one()
    conn.execute(
        update(article_versions)
        .where(article_versions.c.article_id == aid)
        .where(article_versions.c.valid_from <= start)
        .where(article_versions.c.valid_to > start)
        .values(valid_to=start)
    )
    conn.execute(insert(article_versions).values(row))
    conn.execute(update(articles).where(articles.c.article_id == aid).values(version_count=version))


def _article_row(event: ArticleVersionEvent) -> dict[str, Any]:
    return {
        "article_id": event.article_id,
        "article_key": event.article_key,
        "url": event.url,
        "source_id": event.source_id,
        "source_name": event.source_name,
        "title": event.title,
        "standfirst": event.standfirst,
        "body": event.body,
        "byline": event.byline,
        "published_at": event.published_at,
        "first_seen_at": event.observed_at,
        "last_changed_at": event.observed_at,
        "version_count": 1,
        "status": "live",
    }


def _version_row(event: ArticleVersionEvent, position: int, version: int) -> dict[str, Any]:
    revised = event if isinstance(event, ArticleRevised) else None
    return {
        "article_id": event.article_id,
        "version": version,
        "channel": event.channel,
        "source_id": event.source_id,
        "title": event.title,
        "standfirst": event.standfirst,
        "body": event.body,
        "byline": event.byline,
        "content_hash": event.content_hash,
        "fingerprint": event.fingerprint,
        "kind": revised.kind if revised else "substantive",
        "changed_fields": ",".join(revised.changed_fields) if revised else None,
        "chars_added": revised.chars_added if revised else len(event.body),
        "chars_removed": revised.chars_removed if revised else 0,
        "observed_at": event.observed_at,
        "previous_check_at": revised.previous_check_at if revised else None,
        "valid_from": _valid_from(event),
        "valid_to": None,
        "source_version": event.source_version,
        "source_observed_at": event.source_observed_at,
        "position": position,
    }


def _valid_from(event: ArticleVersionEvent) -> Any:
    # A tracker's detection time is closer to the edit than our import time.
    return event.source_observed_at or event.observed_at
