"""``insert_many``, the one bulk insert behind appends and projections, on a SQLite file
and on PostgreSQL: every row stored once, in order, with the values SQLAlchemy's own
insert would store, in batches of any size."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from storage.db import _statement_sizes, insert_many, update_many
from storage.events import to_iso
from storage.schema import blobs, events, source_state
from storage.store import EventStore, NewEvent
from tests.contract.test_store import new

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def event_row(number: int, *, iso: bool = False) -> dict[str, Any]:
    occurred = NOW - timedelta(seconds=number, microseconds=number)
    return {
        "event_id": f"00000000-0000-4000-8000-{number:012d}",
        "stream_id": f"stream-{number % 7}",
        "stream_version": number,
        "idempotency_key": f"key-{number}",
        "event_type": "test.bulk",
        "schema_version": 1,
        # timestamps as payloads hold them (to_iso strings) or as datetimes; None too
        "occurred_at": None if number % 5 == 0 else to_iso(occurred) if iso else occurred,
        "recorded_at": NOW,
        "payload": {"n": number, "text": f"row {number} \u00e9\U0001f600", "half": number / 2},
        "metadata": {"source_id": "bulk", "tags": ["a", number]},
    }


@pytest.mark.parametrize("count", [1, 2, 3, 511, 512, 513, 1300])
def test_every_row_is_stored_once_in_order_with_its_values(engine: Engine, count: int) -> None:
    rows = [event_row(n, iso=n % 2 == 0) for n in range(1, count + 1)]
    with engine.begin() as conn:
        insert_many(conn, events, rows)
        stored = conn.execute(select(events).order_by(events.c.position)).mappings().all()
    assert [r["idempotency_key"] for r in stored] == [r["idempotency_key"] for r in rows]
    for got, want in zip(stored, rows, strict=True):
        occurred = want["occurred_at"]
        if isinstance(occurred, str):
            occurred = datetime.fromisoformat(occurred)
        assert got["occurred_at"] == occurred
        assert got["recorded_at"] == NOW
        assert got["payload"] == want["payload"] and got["metadata"] == want["metadata"]
        assert got["stream_id"] == want["stream_id"]
        assert got["stream_version"] == want["stream_version"]


def test_stored_forms_are_those_of_sqlalchemys_own_insert(engine: Engine) -> None:
    """What a user's SQL sees (timestamp text on SQLite, JSON) must not depend on which
    path wrote the row."""
    ours = [event_row(n, iso=n % 2 == 0) for n in range(1, 9)]
    theirs = [event_row(n) for n in range(101, 109)]
    for row, like in zip(theirs, ours, strict=True):  # the same values, other keys
        row.update({k: like[k] for k in ("occurred_at", "recorded_at", "payload", "metadata")})
        if isinstance(row["occurred_at"], str):
            row["occurred_at"] = datetime.fromisoformat(row["occurred_at"])
    with engine.begin() as conn:
        insert_many(conn, events, ours)
        conn.execute(insert(events), theirs)
        raw = conn.exec_driver_sql(
            "SELECT CAST(occurred_at AS TEXT), CAST(recorded_at AS TEXT), "
            "CAST(payload AS TEXT), CAST(metadata AS TEXT) FROM events ORDER BY position"
        ).all()
    assert raw[:8] == raw[8:]


def test_conflicting_rows_are_skipped_and_the_first_kept(engine: Engine) -> None:
    def blob(digest: str, data: bytes) -> dict[str, Any]:
        return {"sha256": digest, "size": len(data), "encoding": "identity", "data": data,
                "stored_at": NOW}  # fmt: skip

    with engine.begin() as conn:
        insert_many(conn, blobs, [blob("a" * 64, b"first")], skip_conflicts_on=("sha256",))
        batch = [blob(f"{n:064x}", b"x" * n) for n in range(600)]
        batch[300] = blob("a" * 64, b"stored before")  # taken already
        batch[7] = blob(f"{5:064x}", b"again in the same statement")  # rows 0-511: one
        batch.append(blob(f"{6:064x}", b"again in a later statement"))
        insert_many(conn, blobs, batch, skip_conflicts_on=("sha256",))
        stored = dict(conn.execute(select(blobs.c.sha256, blobs.c.data)).all())
    assert len(stored) == 599  # "a"*64 and the 598 distinct new ones
    assert stored["a" * 64] == b"first"
    assert stored[f"{5:064x}"] == b"x" * 5 and stored[f"{6:064x}"] == b"x" * 6
    assert f"{7:064x}" not in stored


def test_a_low_sqlite_variable_limit_still_takes_every_row(sqlite_engine: Engine) -> None:
    """SQLite before 3.32 allowed 999 parameters per statement; 512 rows of 11 columns
    would not fit."""
    rows = [event_row(n) for n in range(1, 301)]
    with sqlite_engine.begin() as conn:
        dbapi: Any = conn.connection.dbapi_connection
        dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
        insert_many(conn, events, rows)
        count = len(conn.execute(select(events.c.position)).all())
    assert count == 300


def test_append_reports_the_positions_it_wrote(engine: Engine) -> None:
    """The projection runner applies ``AppendResult.events`` without reading them back:
    each must carry the position the log gave it."""
    store = EventStore(engine, clock=lambda: NOW)
    store.append([new("before", 1, "before")])
    batch: list[NewEvent] = [new(f"s{n % 13}", n // 13 + 1, f"k{n}") for n in range(1100)]
    result = store.append(batch)
    by_key = {e.idempotency_key: e.position for e in store.read_all(limit=5000)}
    if engine.dialect.name == "sqlite":
        assert [e.idempotency_key for e in result.events] == [f"k{n}" for n in range(1100)]
    assert all(by_key[e.idempotency_key] == e.position for e in result.events)
    assert result.appended == 1100 and len(by_key) == 1101


def test_statement_sizes_cover_the_rows_in_a_few_cached_sizes() -> None:
    for most in (1, 8, 512):
        for rows in range(0, 2100):
            sizes = _statement_sizes(rows, most)
            assert sum(sizes) == rows
            assert all(s <= most and s & (s - 1) == 0 for s in sizes)
            assert len(sizes) <= rows // most + most.bit_length()


def state_row(number: int) -> dict[str, Any]:
    return {"source_id": f"src-{number}", "status": "active", "next_check_at": NOW,
            "interval_seconds": 60.0, "consecutive_failures": 0}  # fmt: skip


def test_update_many_stores_what_sqlalchemys_update_would(engine: Engine) -> None:
    """The poller's end-of-cycle update of every checked source: each row changes only
    its own source, and a user's SQL sees the same stored forms (timestamp text, JSON,
    None) whichever path wrote them."""
    later = NOW + timedelta(minutes=5, microseconds=7)
    with engine.begin() as conn:
        insert_many(conn, source_state, [state_row(n) for n in range(1, 9)])

        def values(n: int) -> dict[str, Any]:
            return {
                "status": "backing-off" if n % 2 else "active",
                "last_check_at": later if n % 3 else to_iso(later),  # datetime or ISO text
                "last_error": None if n % 2 == 0 else f"error {n} \u00e9",
                "consecutive_failures": n,
                "cursor": {"imported": [n, "v\U0001f600"]} if n % 4 else None,
                "lease_owner": None,
            }

        update_many(conn, source_state, "source_id",
                    [{"source_id": f"src-{n}", **values(n)} for n in (1, 2, 3, 4)])  # fmt: skip
        for n in (5, 6, 7, 8):  # the same values through SQLAlchemy's own update
            row = values(n - 4)
            if isinstance(row["last_check_at"], str):
                row["last_check_at"] = datetime.fromisoformat(row["last_check_at"])
            conn.execute(
                update(source_state).where(source_state.c.source_id == f"src-{n}").values(row)
            )
        raw = conn.exec_driver_sql(
            "SELECT status, CAST(last_check_at AS TEXT), last_error, consecutive_failures, "
            "CAST(cursor AS TEXT), CAST(next_check_at AS TEXT) FROM source_state "
            "ORDER BY source_id"
        ).all()
        untouched = conn.execute(select(source_state.c.last_check_at)
                                 .where(source_state.c.source_id.in_(["src-9"]))).all()  # fmt: skip
    assert raw[:4] == raw[4:]
    assert [r[3] for r in raw[:4]] == [1, 2, 3, 4] and untouched == []
    assert raw[0][4] is not None and "imported" in raw[0][4]  # the JSON itself


def test_update_many_changes_only_the_named_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_many(conn, source_state, [state_row(n) for n in range(1, 1001)])
        update_many(conn, source_state, "source_id",
                    [{"source_id": f"src-{n}", "consecutive_failures": n}
                     for n in range(2, 1001, 2)])  # fmt: skip
        stored = dict(conn.execute(select(source_state.c.source_id,
                                          source_state.c.consecutive_failures)).all())  # fmt: skip
    assert stored == {f"src-{n}": n if n % 2 == 0 else 0 for n in range(1, 1001)}
