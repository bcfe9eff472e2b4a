"""Runs projections: each batch of events and the projection's checkpoint are written in
one transaction, so every event takes effect exactly once, across crashes too."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite

from storage.db import REBUILDABLE
from storage.projections.articles import ArticlesProjection
from storage.projections.base import Projection
from storage.projections.rejections import RejectionsProjection
from storage.projections.sources import SourcesProjection
from storage.schema import checkpoints, events, reset_projection
from storage.store import EventStore, StoredEvent, utc_now

Progress = Callable[[int, int], None]
PROJECTOR_LOCK_KEY = 7_366_101_002


def default_projections() -> list[Projection]:
    return [ArticlesProjection(), RejectionsProjection(), SourcesProjection()]


class ProjectionRunner:
    def __init__(
        self,
        engine: Engine,
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = 2000,
    ) -> None:
        self.engine = engine
        self.projections = {p.name: p for p in (projections or default_projections())}
        self.batch_size = batch_size

    def catch_up(self, known: Sequence[StoredEvent] = ()) -> int:
        """Apply every event not yet applied; returns how many were applied.

        One transaction per round for all projections (each with its checkpoint): one
        commit, one fsync, however many projections there are. ``known`` may hold events
        just appended (``AppendResult.events``), in position order: a projection whose
        checkpoint is right before the first of them applies them as they are instead of
        reading them back; anything else is read from the log as usual.
        """
        if not _contiguous(known):
            known = ()
        total = 0
        while True:
            with self._write() as conn:
                head = _head(conn)
                applied, behind = 0, False
                for projection in self.projections.values():
                    count, reached = self._step(conn, projection, head, known)
                    applied += count
                    behind = behind or reached < head
            total += applied
            if not behind:
                return total

    def rebuild(self, name: str | None = None, progress: Progress | None = None) -> int:
        """Empty the projection(s) and replay the whole log; one transaction each, so a
        reader sees the old tables until the new ones are complete."""
        names = [name] if name else list(self.projections)
        total = 0
        for each in names:
            projection = self.projections[each]
            with self._write() as conn:
                reset_projection(conn, each)
                head = _head(conn)
                position = 0
                while (batch := _read(conn, projection, position, head, self.batch_size))[0]:
                    projection.apply(conn, batch[0])
                    position = batch[1]
                    total += len(batch[0])
                    if progress:
                        progress(position, head)
                _save_checkpoint(conn, each, head)
        return total

    def lag(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            head = _head(conn)
            return {name: head - _checkpoint(conn, name) for name in self.projections}

    def _step(
        self, conn: Connection, projection: Projection, head: int, known: Sequence[StoredEvent]
    ) -> tuple[int, int]:
        start = _checkpoint(conn, projection.name)
        if head <= start:
            return 0, start
        if known and known[0].position == start + 1 and known[-1].position <= head:
            # exactly the next events: the same batch _read would give, without the read
            types = projection.event_types
            batch, reached = [e for e in known if e.event_type in types], known[-1].position
        else:
            batch, reached = _read(conn, projection, start, head, self.batch_size)
        if batch:
            projection.apply(conn, batch)
        _save_checkpoint(conn, projection.name, reached)
        return len(batch), reached

    def _write(self) -> Connection:
        conn = self.engine.connect().execution_options(**REBUILDABLE)
        return _Tx(conn)  # type: ignore[return-value]


class _Tx:
    """A connection that commits on a clean exit and always closes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        self.conn.begin()
        if self.conn.dialect.name == "postgresql":
            # One projector at a time (threads or daemons): both would read the same
            # checkpoint and apply the same events. SQLite's BEGIN IMMEDIATE does this.
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PROJECTOR_LOCK_KEY})")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()


def _read(
    conn: Connection, projection: Projection, after: int, head: int, limit: int
) -> tuple[list[StoredEvent], int]:
    """Events of the projection's types in (after, head], and the position reached."""
    query = (
        select(events)
        .where(events.c.position > after, events.c.position <= head)
        .where(events.c.event_type.in_(sorted(projection.event_types)))
        .order_by(events.c.position)
        .limit(limit)
    )
    batch = [EventStore._stored(row) for row in conn.execute(query)]
    reached = batch[-1].position if len(batch) == limit else head
    return batch, reached


def _contiguous(known: Sequence[StoredEvent]) -> bool:
    """Positions ``p, p+1, ..., p+n-1``: no event of the log left out in between."""
    return all(b.position == a.position + 1 for a, b in itertools.pairwise(known))


def _head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())


def _checkpoint(conn: Connection, name: str) -> int:
    found = conn.execute(
        select(checkpoints.c.position).where(checkpoints.c.projection == name)
    ).scalar()
    return int(found or 0)


def _save_checkpoint(conn: Connection, name: str, position: int) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {"projection": name, "position": position, "updated_at": utc_now()}
    statement = dialect.insert(checkpoints).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["projection"],
        set_={"position": position, "updated_at": values["updated_at"]},
    )
    conn.execute(statement)
