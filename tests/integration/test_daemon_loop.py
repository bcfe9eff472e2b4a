"""The daemon's main loop survives a projection that cannot run yet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from daemon import service
from daemon.config import from_mapping
from daemon.service import Daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    raw = {"storage": {"url": "sqlite:///s.db"}, "scheduler": {"enabled": False}}
    made = Daemon(from_mapping(raw, base_dir=tmp_path))
    made.services.prepare()
    try:
        yield made
    finally:
        made.services.close()


def test_polled_events_are_applied_later_when_the_database_is_busy(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(
        service.log, "warning", lambda event, **_: warnings.append(event), raising=False
    )
    runner = daemon.services.projector
    real = runner.catch_up
    calls: list[str] = []

    def busy(*_: Any) -> int:
        calls.append("busy")
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(runner, "catch_up", busy)
    daemon._polled.set()
    daemon._project_polled()  # no exception: the loop goes on
    daemon._project_polled()
    assert daemon._polled.is_set() and calls == ["busy", "busy"]
    assert len(warnings) == 1  # said once, not at every turn of the loop

    monkeypatch.setattr(runner, "catch_up", real)
    daemon._project_polled()
    assert not daemon._polled.is_set()
