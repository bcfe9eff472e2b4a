"""The event store: atomic, idempotent, optimistically concurrent appends, and reads.

The interface is narrow on purpose (append, read_all, read_streams, head); the same
contract test suite runs it on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from storage.blobs import Blob
from storage.db import IMMEDIATE, insert_many
from storage.errors import ConcurrencyError, IdempotencyConflict, StoreUnavailable
from storage.events import DomainEvent, JsonDict, decode, encode
from storage.schema import APPEND_LOCK_KEY, blobs, events

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _event_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs from one read of the OS's random source;
    ``uuid.uuid4()`` makes a system call for each one."""
    random = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=random[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event to append at ``stream_version`` (1 for a new stream)."""

    stream_id: str
    stream_version: int
    idempotency_key: str
    event: DomainEvent
    occurred_at: datetime | None = None
    metadata: JsonDict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    position: int
    event_id: str
    stream_id: str
    stream_version: int
    idempotency_key: str
    event_type: str
    schema_version: int
    occurred_at: datetime | None
    recorded_at: datetime
    payload: JsonDict
    metadata: JsonDict

    def decode(self) -> DomainEvent:
        return decode(self.event_type, self.schema_version, self.payload)


@dataclass(frozen=True, slots=True)
class AppendResult:
    appended: int
    duplicates: int
    last_position: int | None
    # The events just written, in position order, when their positions are known to be
    # exactly ``last_position - appended + 1 .. last_position`` (SQLite); else empty.
    # A projection runner can apply these instead of reading them back.
    events: tuple[StoredEvent, ...] = ()


_MAX_POSITION = select(func.max(events.c.position))

# When the same input is observed again, only the time of observation differs.
_VOLATILE = frozenset({"observed_at", "previous_check_at", "kept_at"})


def _same_payload(stored: JsonDict, offered: JsonDict) -> bool:
    keys = (stored.keys() | offered.keys()) - _VOLATILE
    return all(stored.get(k) == offered.get(k) for k in keys)


class EventStore:
    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self._clock = clock

    def append(self, batch: Sequence[NewEvent], blobs_: Iterable[Blob] = ()) -> AppendResult:
        """Append ``batch`` and store ``blobs_`` in one short transaction.

        An event whose idempotency key is already stored with the same payload is
        skipped (re-offering an input is a no-op); with a different payload it is an
        IdempotencyConflict and nothing is written. A taken stream version raises
        ConcurrencyError and nothing is written.
        """
        now = self._clock()  # one transaction, one time of recording
        ids = _event_ids(len(batch))
        rows = [self._row(e, now, event_id) for e, event_id in zip(batch, ids, strict=True)]
        blob_rows = [self._blob_row(b, now) for b in blobs_]
        try:
            with self.engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
                self._serialize(conn)
                fresh = self._drop_duplicates(conn, rows)
                insert_many(conn, blobs, blob_rows, skip_conflicts_on=("sha256",))
                sqlite = conn.dialect.name == "sqlite"
                before = conn.execute(_MAX_POSITION).scalar() if sqlite and fresh else None
                insert_many(conn, events, fresh)
                last = conn.execute(_MAX_POSITION).scalar()
        except IntegrityError as exc:
            raise ConcurrencyError(f"stream version already taken: {exc.orig}") from exc
        except OperationalError as exc:
            raise StoreUnavailable(f"append failed: {exc.orig}") from exc
        written: tuple[StoredEvent, ...] = ()
        if sqlite and fresh and last is not None and last - (before or 0) == len(fresh):
            # SQLite, inserted in order under the write lock: rowids follow the rows
            first = last - len(fresh) + 1
            recorded = now.astimezone(UTC)
            written = tuple(self._written(first + i, row, recorded) for i, row in enumerate(fresh))
        return AppendResult(len(fresh), len(rows) - len(fresh), last if fresh else None, written)

    def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        query = (select(events).where(events.c.position > after).order_by(events.c.position)).limit(
            limit
        )
        with self.engine.connect() as conn:
            return [self._stored(r) for r in conn.execute(query)]

    def read_streams(self, stream_ids: Iterable[str]) -> dict[str, list[StoredEvent]]:
        """Every event of each stream, in version order; absent streams are left out."""
        ids = list(set(stream_ids))
        found: dict[str, list[StoredEvent]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = (
                    select(events)
                    .where(events.c.stream_id.in_(ids[start : start + 500]))
                    .order_by(events.c.stream_id, events.c.stream_version)
                )
                for row in conn.execute(query):
                    found.setdefault(row.stream_id, []).append(self._stored(row))
        return found

    def head(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one()

    @staticmethod
    def _row(new: NewEvent, now: datetime, event_id: str) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "stream_id": new.stream_id,
            "stream_version": new.stream_version,
            "idempotency_key": new.idempotency_key,
            "event_type": new.event.event_type,
            "schema_version": new.event.schema_version,
            "occurred_at": new.occurred_at,
            "recorded_at": now,
            "payload": encode(new.event),
            "metadata": new.metadata,
        }

    @staticmethod
    def _blob_row(blob: Blob, now: datetime) -> dict[str, Any]:
        return {
            "sha256": blob.sha256,
            "size": blob.size,
            "encoding": blob.encoding,
            "data": blob.data,
            "stored_at": now,
        }

    @staticmethod
    def _serialize(conn: Connection) -> None:
        # SQLite: BEGIN IMMEDIATE already holds the write lock. PostgreSQL: take the
        # append lock now, so the duplicate check below cannot race another writer.
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})")

    @staticmethod
    def _drop_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = [r["idempotency_key"] for r in rows]
        stored: dict[str, JsonDict] = {}
        for start in range(0, len(keys), 500):
            query = select(events.c.idempotency_key, events.c.payload).where(
                events.c.idempotency_key.in_(keys[start : start + 500])
            )
            stored.update({k: p for k, p in conn.execute(query)})
        fresh, seen = [], set()
        for row in rows:
            key = row["idempotency_key"]
            previous = stored.get(key)
            if previous is not None and not _same_payload(previous, row["payload"]):
                raise IdempotencyConflict(
                    f"idempotency key {key!r} is already stored with a different payload"
                )
            if previous is None and key not in seen:
                fresh.append(row)
                seen.add(key)
        return fresh

    @staticmethod
    def _written(position: int, row: dict[str, Any], recorded_at: datetime) -> StoredEvent:
        """The StoredEvent that reading ``row`` back at ``position`` would give."""
        occurred = row["occurred_at"]
        if occurred is not None and occurred.tzinfo is not UTC:
            occurred = occurred.astimezone(UTC)
        return StoredEvent(
            position=position,
            event_id=row["event_id"],
            stream_id=row["stream_id"],
            stream_version=row["stream_version"],
            idempotency_key=row["idempotency_key"],
            event_type=row["event_type"],
            schema_version=row["schema_version"],
            occurred_at=occurred,
            recorded_at=recorded_at,
            payload=row["payload"],
            metadata=row["metadata"],
        )

    @staticmethod
    def _stored(row: Any) -> StoredEvent:
        return StoredEvent(
            position=row.position,
            event_id=row.event_id,
            stream_id=row.stream_id,
            stream_version=row.stream_version,
            idempotency_key=row.idempotency_key,
            event_type=row.event_type,
            schema_version=row.schema_version,
            occurred_at=row.occurred_at,
            recorded_at=row.recorded_at,
            payload=row.payload,
            metadata=row.metadata,
        )


__all__ = ["AppendResult", "EventStore", "NewEvent", "StoredEvent"]
