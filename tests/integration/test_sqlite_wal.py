"""SQLite file settings the daemon relies on: page size of a new database, and WAL
checkpoints made in the background instead of inside a writer's commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from storage.checkpoint import WalCheckpointer
from storage.db import PAGE_SIZE, make_engine
from storage.schema import create_schema


def _pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def test_a_new_database_gets_large_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh.db"
    engine = make_engine(f"sqlite:///{fresh}")
    create_schema(engine)
    with engine.connect() as conn:  # 64 MiB of WAL between automatic checkpoints
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 4096
    engine.dispose()
    assert _pragma(fresh, "page_size") == PAGE_SIZE == 16384

    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE t (x)")  # made with the library default of 4 KiB
    conn.commit()
    conn.close()
    engine = make_engine(f"sqlite:///{old}")
    create_schema(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 16384
    engine.dispose()
    assert _pragma(old, "page_size") == 4096


def _with_filler(tmp_path: Path, **options: Any) -> tuple[Path, Engine]:
    """A new storyline database with an extra table ``filler (x BLOB)`` to write to."""
    database = tmp_path / "storyline.db"
    engine = make_engine(f"sqlite:///{database}", **options)
    create_schema(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE filler (x BLOB)")
        conn.commit()
    return database, engine


def test_without_autocheckpoints_the_background_checkpointer_moves_the_wal_into_the_file(
    tmp_path: Path,
) -> None:
    database, engine = _with_filler(tmp_path, autocheckpoint=False)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        for _ in range(20):  # 20 x 400 KB, far past SQLite's own 4 MB threshold
            conn.execute(text("INSERT INTO filler VALUES (randomblob(400000))"))
            conn.commit()
    before = database.stat().st_size
    assert before < 1_000_000  # nothing was checkpointed by the writer
    checkpointer = WalCheckpointer(str(database), interval=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while database.stat().st_size < 8_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
        engine.dispose()
    assert database.stat().st_size >= 8_000_000


def test_a_batch_stays_in_memory_until_commit_and_a_larger_transaction_spills(
    tmp_path: Path,
) -> None:
    # An inbox batch (about 10 MB of pages) is written to the WAL once, at commit; a
    # transaction past the 32 MiB bound (a rebuild of a large log) spills instead of
    # holding every page in memory.
    database, engine = _with_filler(tmp_path)
    wal = Path(f"{database}-wal")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA cache_spill").scalar() == 32 * 1024 * 1024 // PAGE_SIZE
        committed = wal.stat().st_size
        for _ in range(25):  # 10 MB, uncommitted
            conn.execute(text("INSERT INTO filler VALUES (randomblob(400000))"))
        assert wal.stat().st_size == committed  # nothing spilled yet
        for _ in range(75):  # 40 MB more: past the bound
            conn.execute(text("INSERT INTO filler VALUES (randomblob(400000))"))
        assert wal.stat().st_size > committed  # spilled before commit
        conn.rollback()
    engine.dispose()


def test_truncate_empties_the_wal_unless_a_reader_holds_it(tmp_path: Path) -> None:
    database, engine = _with_filler(tmp_path, autocheckpoint=False)
    wal = Path(f"{database}-wal")
    checkpointer = WalCheckpointer(str(database))
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO filler VALUES (randomblob(400000))"))
        conn.commit()
    reader = sqlite3.connect(database)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM filler").fetchone()  # a read transaction
        assert checkpointer.truncate() is True  # busy: the reader still needs the WAL
        assert wal.stat().st_size > 0
        reader.rollback()
        assert checkpointer.truncate() is False
        assert wal.stat().st_size == 0
    finally:
        reader.close()
        engine.dispose()
