"""What ``storyline status`` and ``storyline history`` read: plain queries on the
projections, readable without the daemon running."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from adapters.normalize import canonical_url
from daemon.errors import NoSuchSource
from daemon.watch import backlog
from storage.db import sqlite_path
from storage.events import from_iso
from storage.schema import (
    article_versions,
    articles,
    events,
    fetch_log,
    rejections,
    source_state,
)

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Row

    from daemon.service import Services


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    sources = source_health(services)
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
        "sources": sources,
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
    src = report["sources"]
    states = ", ".join(f"{n} {state}" for state, n in sorted(src["by_status"].items())) or "none"
    lines.append(f"sources     {states}; {src['due']} due now")
    for failing in src["failing"]:
        lines.append(
            f"  failing   {failing['source_id']} x{failing['consecutive_failures']}: "
            f"{failing['last_error']}"
        )
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
    """The article named by id, key, URL or file name, and its versions, oldest first;
    else the article that a page or changelog source tracks, the source named as
    ``sources show`` takes it (id, URL or name; an ambiguous name is a UserError)."""
    candidates = {ident, f"file:{ident}"}
    if "://" in ident:
        candidates.add(canonical_url(ident))
    head = _article(
        services, or_(articles.c.article_id == ident, articles.c.article_key.in_(candidates))
    )
    if head is None:
        tracked = _tracked_article(services, ident)
        head = None if tracked is None else _article(services, articles.c.article_id == tracked)
    if head is None:
        return None
    with services.engine.connect() as conn:
        versions = conn.execute(
            select(article_versions)
            .where(article_versions.c.article_id == head.article_id)
            .order_by(article_versions.c.version)
        ).all()
    return dict(head._mapping), [dict(v._mapping) for v in versions]


def _article(services: Services, condition: ColumnElement[bool]) -> Row[Any] | None:
    with services.engine.connect() as conn:
        return conn.execute(select(articles).where(condition)).first()


def _tracked_article(services: Services, ident: str) -> str | None:
    """The article id a page or changelog source keeps in its cursor (a feed tracks no
    one article), for the source that ``ident`` names."""
    try:
        source = services.registry.resolve(ident)
    except NoSuchSource:
        return None
    if source["kind"] == "feed":
        return None
    with services.engine.connect() as conn:
        cursor = conn.execute(
            select(source_state.c.cursor).where(source_state.c.source_id == source["source_id"])
        ).scalar()
    article_id = cursor.get("article_id") if isinstance(cursor, dict) else None
    return article_id if isinstance(article_id, str) else None


def _backlog(services: Services) -> tuple[int, float | None]:
    inbox = services.settings.inbox_dir
    return backlog(inbox, time.time()) if inbox.is_dir() else (0, None)


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


def source_health(services: Services) -> dict[str, Any]:
    """Sources by status, how many are due, and the ones failing with their errors."""
    now = utc_now()
    with services.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source_id, status, next_check_at, consecutive_failures, last_error FROM sources"
        ).all()
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    due = sum(
        1
        for r in rows
        if r.status in ("active", "backing-off")
        and r.next_check_at
        and from_iso(str(r.next_check_at)) <= now
    )
    failing = [
        {
            "source_id": r.source_id,
            "consecutive_failures": r.consecutive_failures,
            "last_error": r.last_error,
        }
        for r in rows
        if r.consecutive_failures
    ]
    return {"by_status": by_status, "due": due, "failing": failing[:10]}


def summary_line(services: Services, last_error: str | None = None) -> str:
    """The one line an operator sees in ``systemctl status``."""
    with services.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(articles)).scalar_one()
    backlog, _ = _backlog(services)
    health = source_health(services)
    text = f"{count} articles; inbox backlog {backlog}; {health['due']} sources due"
    if health["failing"]:
        text += f"; {len(health['failing'])} failing"
    return text + (f"; last error: {last_error}" if last_error else "")
