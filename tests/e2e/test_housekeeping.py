"""SQLite housekeeping in a long run: a reader pinning the write-ahead log does not stop
ingestion, the daemon says why the WAL grows, and truncates it once the reader is gone."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from tests.e2e.harness import Storyline, move_all, stage_articles, wait_for

HOLD_SECONDS = 60.0  # the "a reader holding a transaction open for a minute"


@pytest.mark.slow
def test_a_reader_holding_a_transaction_for_a_minute_does_not_stop_ingest(
    storyline: Storyline,
) -> None:
    site = storyline
    site.write_config(storage__wal_checkpoint_seconds=1.0, storage__wal_warn_bytes=1_000_000)
    site.init()
    daemon = site.start()
    names = stage_articles(site.stage, 5000, old=True)
    reader = sqlite3.connect(f"file:{site.db}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        pinned = reader.execute("SELECT count(*) FROM events").fetchone()[0]
        held_since = time.monotonic()
        move_all(names, site.stage, site.inbox)
        wait_for(
            lambda: site.count("articles") == 5000,
            120,
            "all 5000 files ingested while a reader holds the WAL",
            alive=daemon,
        )
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == pinned
        wait_for(
            lambda: time.monotonic() - held_since >= HOLD_SECONDS,
            HOLD_SECONDS + 5,
            "the reader's minute",
            interval=0.5,
            alive=daemon,
        )
        wal_while_pinned = os.path.getsize(f"{site.db}-wal")
        assert wal_while_pinned > 1_000_000
        warned = [e for e in daemon.log_events() if "write-ahead log" in str(e.get("event"))]
        assert warned, "the daemon did not say why the WAL keeps growing"
        assert daemon.alive() and not daemon.errors()
    finally:
        reader.execute("COMMIT")
        reader.close()
    # the daemon's own periodic checkpoint reclaims it; nobody else writes here
    wait_for(
        lambda: os.path.getsize(f"{site.db}-wal") == 0,
        15,
        "the daemon to truncate the WAL after the reader ended",
        alive=daemon,
    )
    assert site.inbox_names() == []
    assert daemon.stop() == 0
