"""Tables, triggers and the schema version. SQLAlchemy Core, one definition for both
SQLite and PostgreSQL; the differences (identity, JSONB, triggers) are spelled out here.

The projection tables (articles, article_versions, rejections, ...) are a public,
versioned contract documented in docs/schema.md.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from storage.errors import SchemaError, SchemaMissing
from storage.types import Json, Position, UtcDateTime

SCHEMA_VERSION = 1

metadata = MetaData()

schema_info = Table(
    "schema_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("position", Position, Identity(always=False), primary_key=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream_id", String(64), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("idempotency_key", String(512), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("payload", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    UniqueConstraint("idempotency_key", name="events_idempotency_key"),
)
Index("events_type_position", events.c.event_type, events.c.position)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("encoding", String(16), nullable=False),  # "zlib" or "identity"
    Column("data", LargeBinary, nullable=False),
    Column("stored_at", UtcDateTime(), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column("article_id", String(36), primary_key=True),
    Column("article_key", String(1024), nullable=False, unique=True),
    Column("url", Text),
    Column("source_id", String(64), nullable=False),
    Column("source_name", String(256)),
    Column("title", Text, nullable=False),
    Column("standfirst", Text),
    Column("body", Text, nullable=False),
    Column("byline", Text),
    Column("published_at", UtcDateTime()),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_changed_at", UtcDateTime(), nullable=False),
    Column("version_count", Integer, nullable=False),
    Column("status", String(32), nullable=False),  # live | withdrawn | tracking-stopped
)
Index("articles_last_changed", articles.c.last_changed_at)

article_versions = Table(
    "article_versions",
    metadata,
    Column("article_id", String(36), ForeignKey("articles.article_id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("standfirst", Text),
    Column("body", Text, nullable=False),
    Column("byline", Text),
    Column("content_hash", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # substantive | cosmetic | revert
    Column("changed_fields", Text),
    Column("chars_added", Integer, nullable=False),
    Column("chars_removed", Integer, nullable=False),
    Column("observed_at", UtcDateTime(), nullable=False),
    Column("previous_check_at", UtcDateTime()),
    Column("valid_from", UtcDateTime(), nullable=False),
    Column("valid_to", UtcDateTime()),
    Column("source_version", String(64)),
    Column("source_observed_at", UtcDateTime()),
    Column("position", BigInteger, nullable=False),
)
Index("article_versions_valid", article_versions.c.article_id, article_versions.c.valid_from)

rejections = Table(
    "rejections",
    metadata,
    Column("position", BigInteger, primary_key=True),
    Column("input", Text, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("kept_at", Text),
    Column("content_sha256", String(64)),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

# Sources: configuration is a projection of source.* events (rebuildable); polling
# state is the scheduler's own table (it changes at every check and is not history);
# the ``sources`` view joins them for users. Every check is one row in ``fetch_log``.
source_config = Table(
    "source_config",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # feed | changelog | page
    Column("url", Text, nullable=False),
    Column("name", Text),
    Column("settings", Json, nullable=False),
    Column("origin", String(64), nullable=False),  # cli | config | feed:<source id>
    Column("removed", Integer, nullable=False),
    Column("added_at", UtcDateTime(), nullable=False),
)

source_state = Table(
    "source_state",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("status", String(24), nullable=False),  # active | backing-off | gone | tracking-stopped
    Column("last_check_at", UtcDateTime()),
    Column("last_success_at", UtcDateTime()),
    Column("last_change_at", UtcDateTime()),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_check_at", UtcDateTime(), nullable=False),
    Column("interval_seconds", Float, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("body_sha256", String(64)),
    Column("cursor", Json),  # per-kind memory: imported tracker versions, tracked article
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime()),
)
Index("source_state_due", source_state.c.next_check_at)

fetch_log = Table(
    "fetch_log",
    metadata,
    Column("id", Position, Identity(always=False), primary_key=True),
    Column("source_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("checked_at", UtcDateTime(), nullable=False),
    Column("http_status", Integer),
    Column("bytes", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),  # new|revised|unchanged|not-modified|failed
    Column("new", Integer, nullable=False),
    Column("revised", Integer, nullable=False),
    Column("error", Text),
)
Index("fetch_log_source", fetch_log.c.source_id, fetch_log.c.checked_at)

SOURCES_VIEW = """CREATE VIEW sources AS
SELECT c.source_id, c.kind, c.url, c.name,
       CASE WHEN c.removed = 1 THEN 'removed' ELSE COALESCE(s.status, 'active') END AS status,
       s.last_check_at, s.last_success_at, s.last_status, s.last_error,
       COALESCE(s.consecutive_failures, 0) AS consecutive_failures, s.next_check_at,
       s.interval_seconds, s.etag, s.last_modified, c.origin, c.added_at
FROM source_config c LEFT JOIN source_state s ON s.source_id = c.source_id"""

PROJECTION_TABLES = {
    "articles": (article_versions, articles),
    "rejections": (rejections,),
    "sources": (source_config,),
}

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS fetch_log_no_update BEFORE UPDATE ON fetch_log
       BEGIN SELECT RAISE(ABORT, 'fetch_log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS fetch_log_no_delete BEFORE DELETE ON fetch_log
       BEGIN SELECT RAISE(ABORT, 'fetch_log is append-only: DELETE refused'); END""",
]

# Appends serialize on a transaction-scoped advisory lock taken by a statement-level
# trigger, before the identity value is drawn: position order is then commit order for
# every insert path, ad-hoc SQL included (RELIABILITY.md, 8.3 scenario F).
APPEND_LOCK_KEY = 7_366_101_001
_POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION storyline_events_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'events are append-only: %% refused', TG_OP; END $$""",
    f"""CREATE OR REPLACE FUNCTION storyline_events_serialize() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN PERFORM pg_advisory_xact_lock({APPEND_LOCK_KEY}); RETURN NULL; END $$""",
    "DROP TRIGGER IF EXISTS events_no_update ON events",
    """CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
       FOR EACH ROW EXECUTE FUNCTION storyline_events_append_only()""",
    "DROP TRIGGER IF EXISTS events_no_truncate ON events",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION storyline_events_append_only()""",
    "DROP TRIGGER IF EXISTS fetch_log_no_change ON fetch_log",
    """CREATE TRIGGER fetch_log_no_change BEFORE UPDATE OR DELETE ON fetch_log
       FOR EACH ROW EXECUTE FUNCTION storyline_events_append_only()""",
    "DROP TRIGGER IF EXISTS events_serialize ON events",
    """CREATE TRIGGER events_serialize BEFORE INSERT ON events
       FOR EACH STATEMENT EXECUTE FUNCTION storyline_events_serialize()""",
]


def create_schema(engine: Engine) -> None:
    """Create every table and trigger; idempotent. Refuses a newer schema."""
    with engine.begin() as conn:
        found = _stored_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaError(
                f"database schema version {found} is newer than this storyline "
                f"({SCHEMA_VERSION}); upgrade storyline"
            )
        metadata.create_all(conn)
        triggers = _POSTGRES_TRIGGERS if conn.dialect.name == "postgresql" else _SQLITE_TRIGGERS
        for statement in triggers:
            conn.exec_driver_sql(statement)
        if "sources" not in inspect(conn).get_view_names():
            conn.exec_driver_sql(SOURCES_VIEW)
        if found is None:
            conn.execute(schema_info.insert().values(key="schema_version", value="1"))


def check_schema(engine: Engine) -> int:
    """The stored schema version; SchemaMissing if absent, SchemaError if unknown."""
    with engine.connect() as conn:
        found = _stored_version(conn)
    if found is None:
        raise SchemaMissing("the database has no storyline schema: run `storyline init`")
    if found != SCHEMA_VERSION:
        raise SchemaError(f"database schema version {found}, expected {SCHEMA_VERSION}")
    return found


def _stored_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_info"):
        return None
    value = conn.execute(
        select(schema_info.c.value).where(schema_info.c.key == "schema_version")
    ).scalar()
    return int(value) if value is not None else None


def reset_projection(conn: Connection, name: str) -> None:
    """Empty one projection's tables and its checkpoint (for a rebuild)."""
    for table in PROJECTION_TABLES[name]:
        conn.execute(table.delete())
    conn.execute(checkpoints.delete().where(checkpoints.c.projection == name))


def drop_all_for_tests(engine: Engine) -> None:
    """Drop every storyline table (test databases only: the triggers make this the one
    way to empty ``events``)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "DROP TABLE IF EXISTS "
                + ", ".join(t.name for t in reversed(metadata.sorted_tables))
                + " CASCADE"
            )
        else:
            metadata.drop_all(conn)
        conn.execute(text("SELECT 1"))
