"""The registry of sources: add, change, remove (as source.* events), reconcile with
config.toml, and the scheduler's state rows."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from adapters.normalize import canonical_url, http_url_problem
from daemon.config import SourceEntry
from daemon.errors import NoSuchSource, UserError
from storage.events import (
    ArticleRestored,
    DomainEvent,
    SourceAdded,
    SourceChanged,
    SourceRemoved,
    to_iso,
)
from storage.projections.runner import ProjectionRunner
from storage.schema import source_config, source_state
from storage.store import EventStore, NewEvent


def source_id_for(url: str) -> str:
    return "src-" + hashlib.sha256(canonical_url(url).encode()).hexdigest()[:12]


def _settings(entry: SourceEntry) -> dict[str, Any]:
    values = asdict(entry)
    return {k: v for k, v in values.items() if k not in ("kind", "url", "name") and v}


class Registry:
    def __init__(self, engine: Engine, store: EventStore, projector: ProjectionRunner) -> None:
        self.engine = engine
        self.store = store
        self.projector = projector

    def add(self, entry: SourceEntry, *, origin: str, now: datetime) -> str:
        """Add (or re-add) a source; returns its id. Adding a known URL changes nothing
        but its name and settings. A name is unique among the sources not removed."""
        problem = http_url_problem(entry.url)
        if problem:
            raise UserError(f"source URL {entry.url!r} {problem}")
        sid = source_id_for(entry.url)
        current = self.get(sid)
        active = current if current and not current["removed"] else None
        if entry.name and (active is None or active["name"] != entry.name):
            self._check_name_free(entry.name, sid)  # kept names stay, even duplicates
        if active:
            if active["name"] != entry.name or active["settings"] != _settings(entry):
                self._append(sid, SourceChanged(source_id=sid, name=entry.name,
                                                settings=_settings(entry)))  # fmt: skip
            return sid
        event = SourceAdded(source_id=sid, kind=entry.kind, url=canonical_url(entry.url),
                            name=entry.name, settings=_settings(entry), origin=origin)  # fmt: skip
        self._append(sid, event)
        self.ensure_state(now, only=sid)
        return sid

    def follow_links(self, feed_id: str, urls: list[str], now: datetime) -> None:
        """Track the page of each new entry of a feed with ``follow_links = true``."""
        for url in urls:
            if http_url_problem(url) is None:
                self.add(SourceEntry(kind="page", url=url), origin=f"feed:{feed_id}", now=now)

    def remove(self, ident: str) -> str:
        found = self.resolve(ident)
        if found["removed"]:
            raise UserError(f"source {found['source_id']} is already removed")
        self._append(found["source_id"], SourceRemoved(source_id=found["source_id"]))
        return str(found["source_id"])

    def resume(self, ident: str, now: datetime) -> str:
        """Active and due now, whatever state it was in (backing off, gone, tracking
        stopped); a stopped article is live again. A removed source is not resumed: it
        is added again, as ``add`` does."""
        found = self.resolve(ident)
        if found["removed"]:
            raise UserError(
                f"source {found['source_id']} was removed; add it again with "
                f"`storyline sources add {found['url']} --kind {found['kind']}`"
            )
        with self.engine.connect() as conn:
            cursor = conn.execute(
                select(source_state.c.cursor).where(source_state.c.source_id == found["source_id"])
            ).scalar()
        if cursor and "article_id" in cursor:
            from daemon.schedule import append_article_event

            event = ArticleRestored(article_id=cursor["article_id"], source_id=found["source_id"],
                                    observed_at=now)  # fmt: skip
            append_article_event(self.store, event, f"resumed|{found['source_id']}|{to_iso(now)}")
            self.projector.catch_up()
        with self.engine.begin() as conn:
            conn.execute(
                update(source_state)
                .where(source_state.c.source_id == found["source_id"])
                .values(status="active", next_check_at=now, consecutive_failures=0,
                        last_change_at=now, interval_seconds=0.0)
            )  # fmt: skip
        return str(found["source_id"])

    def reconcile(self, entries: Sequence[SourceEntry], now: datetime) -> None:
        """Make the configured sources match config.toml; CLI-added ones are kept."""
        wanted = {source_id_for(e.url): e for e in entries}
        for entry in entries:
            self.add(entry, origin="config", now=now)
        for row in self.list():
            if row["origin"] == "config" and not row["removed"] and row["source_id"] not in wanted:
                self._append(row["source_id"], SourceRemoved(source_id=row["source_id"]))
        self.ensure_state(now)

    def ensure_state(self, now: datetime, only: str | None = None) -> None:
        """Every configured source (or just ``only``) has a state row; a new one is due
        at once."""
        self.projector.catch_up()
        configured = select(source_config.c.source_id).where(
            ~source_config.c.source_id.in_(select(source_state.c.source_id))
        )
        if only is not None:
            configured = configured.where(source_config.c.source_id == only)
        with self.engine.begin() as conn:
            missing = list(conn.execute(configured).scalars())
            if missing:
                conn.execute(insert(source_state), [
                    {"source_id": sid, "status": "active", "next_check_at": now,
                     "interval_seconds": 0.0, "consecutive_failures": 0}
                    for sid in missing
                ])  # fmt: skip

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(source_config).order_by(source_config.c.added_at))
            return [dict(r._mapping) for r in rows]

    def get(self, sid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(source_config).where(source_config.c.source_id == sid)
            ).first()
        return dict(row._mapping) if row else None

    def resolve(self, ident: str) -> dict[str, Any]:
        """A source by id, URL or name. A name is unique among the sources not
        removed; one that names several (removed ones, or from before names were
        unique) is ambiguous unless exactly one of them is not removed."""
        self.projector.catch_up()
        rows = self.list()
        url = canonical_url(ident) if "://" in ident else None
        for row in rows:
            if row["source_id"] == ident or (url is not None and row["url"] == url):
                return row
        named = [row for row in rows if row["name"] == ident]
        if len(named) > 1:
            named = [row for row in named if not row["removed"]] or named
        if len(named) == 1:
            return named[0]
        if named:
            ids = ", ".join(row["source_id"] for row in named)
            raise UserError(f"the name {ident!r} is ambiguous: sources {ids}; give the id")
        raise NoSuchSource(f"no source matches {ident!r} (give its id, URL or name)")

    def _check_name_free(self, name: str, sid: str) -> None:
        self.projector.catch_up()
        for row in self.list():
            if row["name"] == name and not row["removed"] and row["source_id"] != sid:
                raise UserError(
                    f"the name {name!r} is taken by source {row['source_id']} ({row['url']});"
                    " choose another name, or remove that source first"
                )

    def _append(self, sid: str, event: DomainEvent) -> None:
        stream = f"source-{sid}"
        history = self.store.read_streams([stream]).get(stream, [])
        version = len(history) + 1
        key = f"{stream}/{version}"
        self.store.append([NewEvent(stream_id=stream, stream_version=version,
                                    idempotency_key=key, event=event,
                                    metadata={"source_id": sid})])  # fmt: skip
        self.projector.catch_up()
