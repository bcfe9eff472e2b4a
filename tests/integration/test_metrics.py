"""Prometheus metrics scraped over HTTP from a real database."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from daemon.config import from_mapping
from daemon.errors import ConfigError
from daemon.metrics import MetricsServer, parse_listen
from daemon.service import Services


def test_metrics_report_what_is_in_the_database(tmp_path: Path) -> None:
    services = Services(from_mapping({}, base_dir=tmp_path))
    services.prepare()
    inbox = services.settings.inbox_dir
    (inbox / "a.txt").write_text("A title\nA body.\n")
    (inbox / "b.txt").write_bytes(b"")
    services.ingestor.ingest(sorted(inbox.iterdir()))
    services.projector.catch_up()
    (inbox / "waiting.txt").write_text("W\nbody\n")
    server = MetricsServer(services, "127.0.0.1:0")
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    finally:
        server.stop()
        services.close()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["storyline_articles"] == 1
    assert values["storyline_events_appended_total"] == 2
    assert values["storyline_files_rejected_total"] == 1
    assert values["storyline_inbox_backlog_files"] == 1
    assert values['storyline_projection_lag_events{projection="articles"}'] == 0
    assert "storyline_sqlite_wal_bytes" in values


@pytest.mark.parametrize("bad", ["9464", "host:", ":80", "h:99999"])
def test_bad_listen_addresses_name_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        parse_listen(bad)
