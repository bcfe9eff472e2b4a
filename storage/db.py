"""Engines for SQLite and PostgreSQL with the settings the event log relies on."""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from storage.events import from_iso
from storage.types import UtcDateTime

PAGE_SIZE = 16384
_AUTOCHECKPOINT_BYTES = 64 * 1024 * 1024
# Dirty pages a transaction may hold in memory before SQLite spills them into the WAL
# mid-transaction. The default cache (2 MB) is smaller than one inbox batch (500 texts
# written into events, articles and article_versions: about 10 MB), and spilling wrote
# index pages more than once: cheaper inserts when the disk is slow, about even when it
# is quiet (docs/performance.md). Larger transactions (a rebuild replays the whole log
# in one) still spill past this bound, so memory stays bounded.
_SPILL_BYTES = 32 * 1024 * 1024
IMMEDIATE = {"storyline_write": True}
# Projection writes: rebuildable from the log, and each batch commits with its checkpoint,
# so losing the last ones to a power cut only means replaying them. In WAL mode NORMAL
# skips the fsync per commit and never corrupts the database.
REBUILDABLE = {"storyline_write": True, "storyline_relaxed": True}


def make_engine(
    url: str,
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 5000,
    autocheckpoint: bool = True,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, ``busy_timeout`` and write transactions
    that start with ``BEGIN IMMEDIATE`` (a deferred read-then-write transaction fails
    at once with "database is locked", whatever the timeout: RELIABILITY.md 8.2).
    ``autocheckpoint=False``: its commits never checkpoint the WAL; the caller runs a
    :class:`storage.checkpoint.WalCheckpointer` instead."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, synchronous, busy_timeout_ms, autocheckpoint)
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(False))
    # a server that does not answer fails the connection instead of hanging the caller
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=4,
        connect_args=connect_args,
        **_JSON_CODEC,
    )
    event.listen(engine, "connect", _postgres_session_settings)
    return engine


def _sqlite_engine(
    url: str, synchronous: str, busy_timeout_ms: int, autocheckpoint: bool
) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000}, **_JSON_CODEC)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        # A new database gets 16 KiB pages (a no-op for an existing one): an article's
        # text is 2-10 KB, which on 4 KiB pages spills into overflow pages in each of
        # events, articles and article_versions; measured in docs/performance.md.
        cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # checkpoint every 64 MiB of WAL instead of 4 MiB: far fewer fsyncs of the main
        # file; or never, when a background checkpointer does it
        page = cursor.execute("PRAGMA page_size").fetchone()[0]
        pages = _AUTOCHECKPOINT_BYTES // page if autocheckpoint else 0
        cursor.execute(f"PRAGMA wal_autocheckpoint={pages}")
        # N sets the bound; the same argument is also read as a yes/no switch (its low
        # byte), which is 0 for any multiple of 256 pages: switch spilling on again after
        cursor.execute(f"PRAGMA cache_spill={_SPILL_BYTES // page}")
        cursor.execute("PRAGMA cache_spill=ON")
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


def json_dumps(value: Any) -> str:
    """JSON for payload and metadata columns: orjson (about 15x faster than the
    stdlib on an article's payload), or the stdlib for what orjson would refuse (a
    lone surrogate, an integer over 64 bits) or write differently (NaN and infinities,
    which orjson turns into null): the same document either way. Read back with the
    stdlib, which reads every integer exactly."""
    if not _finite(value):
        return json.dumps(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value)


def _finite(value: Any) -> bool:
    """False if ``value`` holds a NaN or an infinity anywhere.

    This runs on every payload and metadata document: the types of a container's
    items are collected at C speed, and only floats and containers are looked into."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return True
    if set(map(type, items)) <= _LEAVES:
        return True
    return all(map(_finite, items))


_LEAVES = frozenset({str, int, bool, type(None)})  # cannot be a NaN or an infinity


_JSON_CODEC: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": json.loads}


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


# -- bulk inserts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """How rows with one set of keys go into one table on SQLite."""

    head: str  # INSERT INTO t (columns) VALUES -- plain columns first
    row: str  # (?, ?, ...)
    tail: str  # ON CONFLICT ... DO NOTHING, or nothing
    plain: Callable[[dict[str, Any]], tuple[Any, ...]]  # the plain columns' values
    steps: tuple[tuple[str, Any], ...]  # (name, bind processor) of the others
    columns: int
    statements: dict[int, str] = field(default_factory=dict, compare=False)  # by rows

    def sql(self, rows: int) -> str:
        found = self.statements.get(rows)
        if found is None:
            found = self.statements[rows] = f"{self.head} {', '.join([self.row] * rows)}{self.tail}"
        return found


_PLANS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], _Plan] = {}
_MAX_ROWS_PER_STATEMENT = 512


def insert_many(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_conflicts_on: tuple[str, ...] = (),
) -> None:
    """``INSERT`` every row (all with the same keys), in order; with
    ``skip_conflicts_on`` (a unique key), rows already stored under it are skipped.

    Timestamp columns take aware datetimes or the canonical ISO-8601 strings that
    ``to_iso`` makes (what event payloads hold), so a row built from a payload needs no
    parsing. Elsewhere than SQLite: a plain SQLAlchemy executemany.

    On SQLite the rows go straight to the driver, each value through its column type's
    own bind processor (identical stored forms); SQLAlchemy's per-row parameter building
    costs more than the insert itself there. They go as multi-row ``INSERT ... VALUES
    (...), (...)`` statements of up to 512 rows, not an executemany: the driver lets go
    of the GIL around every statement it steps, and at one statement per row the writer
    waited for the GIL again after each row while the poller's threads were busy
    (measured in docs/performance.md). Statement sizes are powers of two, so the few
    statements there are stay in the driver's statement cache (about 1.2 MB per table
    and connection for the ten sizes of an 11-column table).
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        statement: Any = insert(table)
        if skip_conflicts_on:
            statement = postgresql.insert(table).on_conflict_do_nothing(
                index_elements=list(skip_conflicts_on)
            )
        conn.execute(statement, [_parsed_times(table, row) for row in rows])
        return
    plan = _plan(conn.dialect, table, tuple(rows[0]), skip_conflicts_on)
    plain, steps = plan.plain, plan.steps
    values = [
        (*plain(row), *[None if (v := row[n]) is None else p(v) for n, p in steps]) for row in rows
    ]
    start = 0
    for size in _statement_sizes(len(values), _most_rows(conn, plan.columns)):
        chunk = values[start : start + size]
        conn.exec_driver_sql(plan.sql(size), tuple(itertools.chain.from_iterable(chunk)))
        start += size


def update_many(conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """``UPDATE table SET ... WHERE key = row[key]`` for every row (all with the same
    keys), in one executemany. Values as for :func:`insert_many`.

    On SQLite the rows go straight to the driver, each value through its column type's
    bind processor (the stored forms SQLAlchemy's update gives), without SQLAlchemy's
    per-row parameter building: the poller updates every checked source's state at
    the end of each cycle. Elsewhere: SQLAlchemy's executemany."""
    if not rows:
        return
    names = tuple(k for k in rows[0] if k != key)
    if conn.dialect.name != "sqlite":
        statement = (
            update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({k: bindparam(f"b_{k}") for k in names})
        )
        conn.execute(
            statement, [{f"b_{k}": v for k, v in _parsed_times(table, r).items()} for r in rows]
        )
        return
    sql, order = _update_plan(conn.dialect, table, key, names)
    # None goes through the processors too: a JSON column stores it as JSON null, as
    # SQLAlchemy's update does
    values = [tuple(row[k] if p is None else p(row[k]) for k, p in order) for row in rows]
    conn.exec_driver_sql(sql, values)


def _update_plan(
    dialect: Dialect, table: Table, key: str, names: tuple[str, ...]
) -> tuple[str, tuple[tuple[str, Callable[[Any], Any] | None], ...]]:
    cache_key = (dialect.name, table.name, key, names)
    found = _UPDATE_PLANS.get(cache_key)
    if found is None:
        quote = dialect.identifier_preparer.quote
        assignments = ", ".join(f"{quote(k)} = ?" for k in names)
        sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote(key)} = ?"
        order = tuple((k, _processor(dialect, table.c[k])) for k in (*names, key))
        found = _UPDATE_PLANS[cache_key] = (sql, order)
    return found


_UPDATE_PLANS: dict[
    tuple[str, str, str, tuple[str, ...]],
    tuple[str, tuple[tuple[str, Callable[[Any], Any] | None], ...]],
] = {}


def _statement_sizes(rows: int, most: int) -> list[int]:
    """``rows`` split into statements of ``most`` rows (a power of two), then the rest in
    falling powers of two: 1,300 at most 512 gives 512, 512, 256, 16, 4."""
    sizes = [most] * (rows // most)
    rest = rows % most
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def _most_rows(conn: Connection, columns: int) -> int:
    """The largest power of two of rows, at most 512, whose parameters one statement
    can take (SQLite's variable limit: 32,766 since 3.32, 999 before)."""
    dbapi: Any = conn.connection.dbapi_connection
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    fits = max(1, min(_MAX_ROWS_PER_STATEMENT, limit // max(columns, 1)))
    return 1 << (fits.bit_length() - 1)


def _plan(
    dialect: Dialect, table: Table, keys: tuple[str, ...], conflict: tuple[str, ...]
) -> _Plan:
    cache_key = (dialect.name, table.name, keys, conflict)
    found = _PLANS.get(cache_key)
    if found is None:
        processors = {key: _processor(dialect, table.c[key]) for key in keys}
        plain = [k for k in keys if processors[k] is None]
        steps = tuple((k, processors[k]) for k in keys if processors[k] is not None)
        columns = [table.c[k] for k in [*plain, *(k for k, _ in steps)]]
        quote = dialect.identifier_preparer.quote
        tail = ""
        if conflict:
            tail = f" ON CONFLICT ({', '.join(quote(k) for k in conflict)}) DO NOTHING"
        found = _PLANS[cache_key] = _Plan(
            head=(
                f"INSERT INTO {quote(table.name)} "
                f"({', '.join(quote(c.name) for c in columns)}) VALUES"
            ),
            row=f"({', '.join('?' for _ in columns)})",
            tail=tail,
            plain=_getter(plain),
            steps=steps,
            columns=len(columns),
        )
    return found


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` in a row, as a tuple (``itemgetter``, at C speed)."""
    if not names:
        return lambda row: ()
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return operator.itemgetter(*names)


def _processor(dialect: Dialect, column: Any) -> Callable[[Any], Any] | None:
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None or not isinstance(column.type, UtcDateTime):
        return process

    # a batch shares a few instants (its clock reading, as datetimes or as the ISO
    # strings of its payloads): convert each once
    @functools.lru_cache(maxsize=256)
    def timestamp(value: Any) -> Any:
        if isinstance(value, str):
            return value if _CANONICAL.fullmatch(value) else process(from_iso(value))
        return process(value)

    return timestamp


_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")  # to_iso's shape


def _parsed_times(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    if not any(isinstance(v, str) and isinstance(table.c[k].type, UtcDateTime)
               for k, v in row.items()):  # fmt: skip
        return row
    return {
        k: from_iso(v) if isinstance(v, str) and isinstance(table.c[k].type, UtcDateTime) else v
        for k, v in row.items()
    }
