"""The daemon's signal handlers only set flags.

A Python signal handler runs in the main thread between two bytecodes, possibly while
that thread is inside the logger holding its non-reentrant lock. A handler that logged
deadlocked the daemon at SIGTERM (seen under load in the SIGTERM-mid-ingest test): the
stop is logged by the main loop instead."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import service
from daemon.config import from_mapping
from daemon.service import Daemon


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **_: self.calls.append((level, event))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    raw = {"storage": {"url": "sqlite:///s.db"}, "scheduler": {"enabled": False}}
    made = Daemon(from_mapping(raw, base_dir=tmp_path))
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield made
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        made.services.close()


def test_handlers_set_flags_and_the_loop_logs_the_stop(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(service, "log", recorder)
    daemon.install_signal_handlers()
    assert not daemon._stopping()
    for signum in (signal.SIGHUP, signal.SIGTERM):
        handler = signal.getsignal(signum)
        assert callable(handler)
        handler(signum, None)
    assert recorder.calls == []  # nothing logged inside a handler
    assert daemon._reload is True
    assert daemon._stopping() and daemon._stopping()
    assert recorder.calls == [("info", "signal received, finishing the batch in flight")]
