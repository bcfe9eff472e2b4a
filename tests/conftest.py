"""Shared fixtures: databases for every backend the store supports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.db import make_engine
from storage.schema import create_schema, drop_all_for_tests

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_URL = os.environ.get("STORYLINE_TEST_POSTGRES_URL")


def _sqlite_engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'storyline.db'}")


def _postgres_engine() -> Engine:
    if not POSTGRES_URL:
        pytest.skip("STORYLINE_TEST_POSTGRES_URL is not set: PostgreSQL case not run")
    return make_engine(POSTGRES_URL)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty storyline schema on each backend."""
    made = _sqlite_engine(tmp_path) if request.param == "sqlite" else _postgres_engine()
    drop_all_for_tests(made)
    create_schema(made)
    try:
        yield made
    finally:
        if made.dialect.name == "postgresql":
            drop_all_for_tests(made)
        made.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    made = _sqlite_engine(tmp_path)
    create_schema(made)
    yield made
    made.dispose()


def unique() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    made = _postgres_engine()
    drop_all_for_tests(made)
    create_schema(made)
    try:
        yield made
    finally:
        drop_all_for_tests(made)
        made.dispose()
