"""The event store contract, run on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from storage.blobs import Blob, load_blob
from storage.errors import ConcurrencyError, IdempotencyConflict
from storage.events import InputRejected, SourceAdded
from storage.store import EventStore, NewEvent
from tests.conftest import unique

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def rejected(name: str, reason: str = "empty") -> InputRejected:
    return InputRejected(
        input=name,
        reason=reason,
        message=f"{name} is {reason}",
        kept_at=None,
        content_sha256=None,
        observed_at=NOW,
    )


def new(stream: str, version: int, key: str, reason: str = "empty") -> NewEvent:
    return NewEvent(
        stream_id=stream,
        stream_version=version,
        idempotency_key=key,
        event=rejected(stream, reason),
        metadata={"source_id": "test"},
    )


def test_append_assigns_increasing_positions_and_reads_back(engine: Engine) -> None:
    store = EventStore(engine, clock=lambda: NOW)
    result = store.append([new("s1", 1, "k1"), new("s1", 2, "k2"), new("s2", 1, "k3")])
    assert result.appended == 3
    stored = store.read_all()
    assert [e.idempotency_key for e in stored] == ["k1", "k2", "k3"]
    assert [e.position for e in stored] == sorted({e.position for e in stored})
    assert stored[0].decode() == rejected("s1")
    assert stored[0].recorded_at == NOW
    assert stored[0].metadata == {"source_id": "test"}
    assert store.head() == stored[-1].position
    ids = [uuid.UUID(e.event_id) for e in stored]
    assert len(set(ids)) == 3 and {i.version for i in ids} == {4}


def test_reappending_the_same_event_is_a_no_op(engine: Engine) -> None:
    store = EventStore(engine)
    store.append([new("s1", 1, "k1")])
    again = store.append([new("s1", 1, "k1")])
    assert (again.appended, again.duplicates) == (0, 1)
    assert len(store.read_all()) == 1


def test_large_integers_and_fractions_round_trip_and_reappend_as_no_ops(
    engine: Engine,
) -> None:
    """Integers over 64 bits and fractions must read back as written, or the same event
    offered again would look like a different one. (Infinities are refused by the
    configuration: PostgreSQL's JSON has no way to hold them.)"""
    store = EventStore(engine)
    settings = {"max_interval": 0.1 + 0.2, "big": 2**70 + 1, "small": -(2**64) - 3}
    event = NewEvent(
        stream_id=f"source-{unique()}",
        stream_version=1,
        idempotency_key=f"k-{unique()}",
        event=SourceAdded(source_id="s", kind="feed", url="https://x.test/", name=None,
                          settings=settings),
    )  # fmt: skip
    store.append([event])
    again = store.append([event])
    assert (again.appended, again.duplicates) == (0, 1)
    stored = store.read_streams([event.stream_id])[event.stream_id]
    assert stored[0].decode().settings == settings


def test_same_key_with_another_payload_is_refused_and_nothing_written(engine: Engine) -> None:
    store = EventStore(engine)
    store.append([new("s1", 1, "k1", reason="empty")])
    with pytest.raises(IdempotencyConflict, match="k1"):
        store.append([new("s2", 1, "k2"), new("s1", 2, "k1", reason="binary")])
    assert [e.idempotency_key for e in store.read_all()] == ["k1"]


def test_taken_stream_version_is_a_conflict_and_the_batch_is_all_or_nothing(
    engine: Engine,
) -> None:
    store = EventStore(engine)
    store.append([new("s1", 1, "k1")])
    with pytest.raises(ConcurrencyError):
        store.append([new("s2", 1, "k2"), new("s1", 1, "k3")])
    assert [e.idempotency_key for e in store.read_all()] == ["k1"]


def test_read_streams_returns_each_stream_in_version_order(engine: Engine) -> None:
    store = EventStore(engine)
    store.append([new("a", 1, "1"), new("b", 1, "2"), new("a", 2, "3")])
    streams = store.read_streams(["a", "b", "missing"])
    assert [e.stream_version for e in streams["a"]] == [1, 2]
    assert list(streams) == ["a", "b"]


def test_update_delete_are_refused_by_the_database(engine: Engine) -> None:
    store = EventStore(engine)
    store.append([new("s1", 1, "k1")])
    for statement in ("UPDATE events SET event_type = 'x'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert len(store.read_all()) == 1


@pytest.mark.postgres
def test_truncate_is_refused_on_postgres(pg_engine: Engine) -> None:
    EventStore(pg_engine).append([new("s1", 1, "k1")])
    with pytest.raises(DBAPIError, match="append-only"), pg_engine.begin() as conn:
        conn.execute(text("TRUNCATE events"))


_ADHOC = """INSERT INTO events (event_id, stream_id, stream_version, idempotency_key,
    event_type, schema_version, recorded_at, payload, metadata)
    VALUES (:id, :stream, 1, :key, 'input.rejected', 1, now(), '{}', '{}')"""


@pytest.mark.postgres
def test_position_order_is_commit_order_even_for_ad_hoc_inserts(pg_engine: Engine) -> None:
    """A slow transaction that inserted first must not get a position after a writer
    that committed later: otherwise a projector reading "position > checkpoint" loses
    the slow one forever (RELIABILITY.md 8.3)."""
    slow = pg_engine.connect()
    slow_tx = slow.begin()
    slow.execute(text(_ADHOC), {"id": unique(), "stream": "slow", "key": "slow"})
    done = threading.Event()

    def fast_writer() -> None:
        with pg_engine.begin() as conn:
            conn.execute(text(_ADHOC), {"id": unique(), "stream": "fast", "key": "fast"})
        done.set()

    thread = threading.Thread(target=fast_writer)
    thread.start()
    assert not done.wait(0.5), "the second writer must wait for the first to commit"
    slow_tx.commit()
    slow.close()
    thread.join(timeout=10)
    assert done.is_set()
    order = [e.stream_id for e in EventStore(pg_engine).read_all()]
    assert order == ["slow", "fast"]


def test_blobs_are_stored_once_and_round_trip(engine: Engine) -> None:
    store = EventStore(engine)
    raw = ("a paragraph of text " * 200).encode()
    blob = Blob.of(raw)
    assert blob.encoding == "zlib" and len(blob.data) < len(raw)
    assert zlib.decompress(blob.data) == raw  # the standard format: any zlib reads it
    store.append([new("s1", 1, "k1")], [blob])
    store.append([new("s1", 2, "k2")], [blob])
    with engine.connect() as conn:
        assert load_blob(conn, blob.sha256) == raw
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == 1


def test_concurrent_writers_never_interleave_and_positions_follow_commit_order(
    engine: Engine,
) -> None:
    store = EventStore(engine)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for batch in range(5):
                store.append(
                    [new(f"w{n}", batch * 10 + i + 1, f"w{n}-{batch}-{i}") for i in range(10)]
                )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    stored = store.read_all(limit=1000)
    assert len(stored) == 200
    # each append's ten events are contiguous in position order
    for start in range(0, 200, 10):
        chunk = stored[start : start + 10]
        assert len({e.stream_id for e in chunk}) == 1
        assert [e.stream_version for e in chunk] == list(
            range(chunk[0].stream_version, chunk[0].stream_version + 10)
        )


def test_concurrent_projectors_apply_every_event_exactly_once(engine: Engine) -> None:
    """Two threads catching up at once (the poller's thread and the main loop; or two
    daemons on PostgreSQL) must not apply an event twice or move a checkpoint back."""
    from storage.projections.runner import ProjectionRunner

    store = EventStore(engine)
    store.append([new(f"r{i}", 1, f"k{i}") for i in range(300)])
    errors: list[BaseException] = []

    def project() -> None:
        try:
            ProjectionRunner(engine, batch_size=7).catch_up()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=project) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rejections")).scalar_one() == 300
    assert ProjectionRunner(engine).lag() == {"articles": 0, "rejections": 0, "sources": 0}
