"""The storage error tree. Driver errors are translated here, chained with ``from``.

StoreError
 +-- ConcurrencyError       a stream moved on since the caller read it
 +-- IdempotencyConflict    an idempotency key arrived with a different payload
 +-- SchemaError            the database schema is missing or of another version
 |    +-- SchemaMissing      the database has no storyline schema (``storyline init``)
 +-- StoreUnavailable       the database cannot be reached or is locked too long
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every storage error."""


class ConcurrencyError(StoreError):
    """An append expected a stream version that another writer already took."""


class IdempotencyConflict(StoreError):
    """The same idempotency key was offered with a different payload."""


class SchemaError(StoreError):
    """The schema is absent, or of a version this code does not know."""


class SchemaMissing(SchemaError):
    """The database has no storyline schema: ``storyline init`` has not set it up."""


class StoreUnavailable(StoreError):
    """The database did not answer, or stayed locked past the timeout."""
