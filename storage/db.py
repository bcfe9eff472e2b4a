"""Engines for SQLite and PostgreSQL with the settings the event log relies on."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

IMMEDIATE = {"storyline_write": True}
# Projection writes: rebuildable from the log, and each batch commits with its checkpoint,
# so losing the last ones to a power cut only means replaying them. In WAL mode NORMAL
# skips the fsync per commit and never corrupts the database.
REBUILDABLE = {"storyline_write": True, "storyline_relaxed": True}


def make_engine(url: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``busy_timeout`` and write transactions
    that start with ``BEGIN IMMEDIATE`` (a deferred read-then-write transaction fails
    at once with "database is locked", whatever the timeout: RELIABILITY.md 8.2)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, synchronous, busy_timeout_ms)
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(False))
    engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    event.listen(engine, "connect", _postgres_session_settings)
    return engine


def _sqlite_engine(url: str, synchronous: str, busy_timeout_ms: int) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # checkpoint every 64 MiB of WAL instead of 4 MiB: far fewer fsyncs of the main file
        cursor.execute("PRAGMA wal_autocheckpoint=16384")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("storyline_write", False):
            relaxed = options.get("storyline_relaxed", False)
            conn.exec_driver_sql(f"PRAGMA synchronous={'NORMAL' if relaxed else synchronous}")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _postgres_session_settings(dbapi_conn: Any, _record: Any) -> None:
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")
        cursor.execute("SET idle_in_transaction_session_timeout = '30s'")
    dbapi_conn.commit()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_path(engine: Engine) -> str | None:
    """The file behind a SQLite engine, or None for memory or another database."""
    if not is_sqlite(engine):
        return None
    database = engine.url.database
    return database if database and database != ":memory:" else None
