"""What ``storyline status`` and ``storyline history`` read: plain queries on the
projections, readable without the daemon running."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from adapters.normalize import canonical_url
from daemon.files import is_ignored
from storage.db import sqlite_path
from storage.schema import article_versions, articles, events, fetch_log, rejections

if TYPE_CHECKING:
    from daemon.service import Services


def collect(services: Services) -> dict[str, Any]:
    with services.engine.connect() as conn:
        counts = {
            "articles": conn.execute(select(func.count()).select_from(articles)).scalar_one(),
            "versions": conn.execute(
                select(func.count()).select_from(article_versions)
            ).scalar_one(),
            "events": conn.execute(select(func.count()).select_from(events)).scalar_one(),
            "rejections": conn.execute(select(func.count()).select_from(rejections)).scalar_one(),
        }
        latest = conn.execute(
            select(events.c.position, events.c.event_type, events.c.recorded_at)
            .order_by(events.c.position.desc())
            .limit(5)
        ).all()
        last_rejections = conn.execute(
            select(rejections.c.input, rejections.c.reason, rejections.c.recorded_at)
            .order_by(rejections.c.position.desc())
            .limit(5)
        ).all()
    backlog, oldest = _backlog(services)
    return {
        "database": services.settings.database_url,
        "counts": counts,
        "projection_lag": services.projector.lag(),
        "inbox": {
            "path": str(services.settings.inbox_dir),
            "backlog": backlog,
            "oldest_age_seconds": oldest,
        },
        "latest_events": [dict(r._mapping) for r in latest],
        "latest_rejections": [dict(r._mapping) for r in last_rejections],
        "wal_bytes": _wal_bytes(services),
    }


def render(report: dict[str, Any]) -> str:
    c, inbox = report["counts"], report["inbox"]
    lag = ", ".join(f"{k} {v}" for k, v in report["projection_lag"].items())
    oldest = inbox["oldest_age_seconds"]
    lines = [
        f"database    {report['database']}",
        f"articles    {c['articles']} ({c['versions']} versions)",
        f"events      {c['events']}",
        f"rejections  {c['rejections']}",
        f"lag         {lag} (events not yet projected)",
        f"inbox       {inbox['backlog']} waiting"
        + (f", oldest {oldest:.0f}s" if oldest is not None else ""),
    ]
    if report["wal_bytes"] is not None:
        lines.append(f"wal         {report['wal_bytes']} bytes")
    lines.append("latest events:")
    lines += [
        f"  {e['position']:>8}  {e['recorded_at']}  {e['event_type']}"
        for e in report["latest_events"]
    ]
    if report["latest_rejections"]:
        lines.append("latest rejections:")
        lines += [
            f"  {r['recorded_at']}  {r['reason']:<12} {r['input']}"
            for r in report["latest_rejections"]
        ]
    return "\n".join(lines)


def article_history(
    services: Services, ident: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The article named by id, key, URL or file name, and its versions, oldest first."""
    candidates = {ident, f"file:{ident}"}
    if "://" in ident:
        candidates.add(canonical_url(ident))
    with services.engine.connect() as conn:
        head = conn.execute(
            select(articles).where(
                or_(articles.c.article_id == ident, articles.c.article_key.in_(candidates))
            )
        ).first()
        if head is None:
            return None
        versions = conn.execute(
            select(article_versions)
            .where(article_versions.c.article_id == head.article_id)
            .order_by(article_versions.c.version)
        ).all()
    return dict(head._mapping), [dict(v._mapping) for v in versions]


def _backlog(services: Services) -> tuple[int, float | None]:
    inbox = services.settings.inbox_dir
    if not inbox.is_dir():
        return 0, None
    now, count, oldest = time.time(), 0, None
    with os.scandir(inbox) as entries:
        for entry in entries:
            if is_ignored(entry.name):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            count += 1
            oldest = mtime if oldest is None else min(oldest, mtime)
    return count, (now - oldest if oldest is not None else None)


def _wal_bytes(services: Services) -> int | None:
    database = sqlite_path(services.engine)
    if database is None:
        return None
    wal = database + "-wal"
    return os.path.getsize(wal) if os.path.exists(wal) else 0


def source_rows(services: Services) -> list[dict[str, Any]]:
    services.projector.catch_up()
    with services.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM sources ORDER BY added_at").all()
    return [dict(r._mapping) for r in rows]


def recent_checks(services: Services, source_id: str, limit: int = 10) -> list[dict[str, Any]]:
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(fetch_log)
            .where(fetch_log.c.source_id == source_id)
            .order_by(fetch_log.c.id.desc())
            .limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]
