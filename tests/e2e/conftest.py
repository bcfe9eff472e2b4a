"""Fixtures for the end-to-end tests: a temporary installation and a notify socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import NotifyListener, Storyline


@pytest.fixture
def storyline(tmp_path: Path) -> Iterator[Storyline]:
    installation = Storyline(tmp_path / "site")
    try:
        yield installation
    finally:
        installation.cleanup()


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    listener = NotifyListener()
    try:
        yield listener
    finally:
        listener.close()
