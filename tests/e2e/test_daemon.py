"""The running daemon as a user sees it: files dropped into the inbox become articles
(RELIABILITY.md rows 5, 13, 14, 19, 32, 33)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.harness import (
    REPO,
    SEEDS,
    Storyline,
    base_env,
    move_all,
    stage_articles,
    wait_for,
)


def _seed(prefix: str) -> Path:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path


SEED_TITLES = {
    "000": "Boris Johnson to pressure Russia to pull out of Ukraine and Syria on first "
    "Foreign Secretary visit to country in five years",
    "001": _seed("001").read_text(encoding="utf-8").split("\n")[0].strip(),
    "002": "Press release: Foreign Secretary to visit Moscow",
    "003": "‘Things aren’t easy between us’: Boris Johnson meets Russian counterpart in Moscow",
    "004": "Boris Johnson urges Russia to use influence to halt Aleppo assault",
}

_HISTORY_LINE = re.compile(r"^\s+v(\d+)\s.*?\s(substantive|cosmetic|revert)\s")


def _titles(site: Storyline) -> dict[str, int]:
    return dict(site.query("select title, version_count from articles"))


def _history_kinds(site: Storyline, name: str) -> dict[int, str]:
    result = site.cli("history", name)
    assert result.returncode == 0, result.stderr
    kinds = {}
    for line in result.stdout.splitlines():
        match = _HISTORY_LINE.match(line)
        if match:
            kinds[int(match.group(1))] = match.group(2)
    return kinds


def _archive_day_ok(relative: Path) -> bool:
    """archive/YYYY/MM/DD/NAME, dated today or yesterday (UTC: a run across midnight)."""
    if len(relative.parts) != 4:
        return False
    day = "/".join(relative.parts[:3])
    today = datetime.now(UTC)
    return day in {d.strftime("%Y/%m/%d") for d in (today, today - timedelta(days=1))}


@pytest.mark.slow
def test_seeds_become_articles_and_revisions_get_the_right_kind(storyline: Storyline) -> None:
    site = storyline
    site.init()
    daemon = site.start()

    started = time.monotonic()
    for seed in sorted(SEEDS.glob("*.txt")):
        site.drop(seed.name, seed.read_bytes())
    expected = {title: 1 for title in SEED_TITLES.values()}
    wait_for(lambda: _titles(site) == expected, 5.0, "five seed articles", alive=daemon)
    latency = time.monotonic() - started
    print(f"five seeds visible in articles after {latency:.3f}s")

    wait_for(lambda: not site.inbox_names(), 5.0, "an empty inbox", alive=daemon)
    archived = site.archived()
    assert sorted(p.name for p in archived) == sorted(p.name for p in SEEDS.glob("*.txt"))
    assert all(_archive_day_ok(p) for p in archived), archived

    # A revision under the same file name: a second, substantive version.
    seed = _seed("004")
    name = seed.name
    original = seed.read_text(encoding="utf-8")
    edited = original + "\nThe minister's office said the talks would continue next week.\n"
    title = SEED_TITLES["004"]

    def versions() -> int:
        return _titles(site).get(title, 0)

    site.drop(name, edited)
    wait_for(lambda: versions() == 2, 5.0, "version 2", alive=daemon)
    assert _history_kinds(site, name) == {1: "substantive", 2: "substantive"}

    # The identical text again: no event (the file is still taken out of the inbox).
    events_before = site.count("events")
    site.drop(name, edited)
    wait_for(lambda: not site.inbox_names(), 5.0, "the identical copy to be taken", alive=daemon)
    assert site.count("events") == events_before
    assert versions() == 2

    # Only the quote style changed: a cosmetic version.
    assert "'" in edited
    site.drop(name, edited.replace("'", "\u2019"))
    wait_for(lambda: versions() == 3, 5.0, "version 3", alive=daemon)
    assert _history_kinds(site, name)[3] == "cosmetic"

    # Back to the original text: a revert.
    site.drop(name, original)
    wait_for(lambda: versions() == 4, 5.0, "version 4", alive=daemon)
    assert _history_kinds(site, name) == {
        1: "substantive",
        2: "substantive",
        3: "cosmetic",
        4: "revert",
    }
    wait_for(lambda: not site.inbox_names(), 5.0, "an empty inbox", alive=daemon)
    assert sum(p.name.startswith(name[:-4]) for p in site.archived()) == 5
    assert daemon.errors() == []
    assert daemon.stop() == 0


# -- hostile input -----------------------------------------------------------------


def _rejection_reasons(site: Storyline) -> dict[str, str]:
    return {Path(i).name: r for i, r in site.query("select input, reason from rejections")}


def _assert_rejected(site: Storyline, name: str, reason: str, *, kept: bool = True) -> None:
    assert _rejection_reasons(site).get(name) == reason
    assert not os.path.lexists(site.inbox / name)
    if kept:
        assert os.path.lexists(site.rejected / name), f"{name} not kept in rejected/"
        why = json.loads((site.rejected / f"{name}.why.json").read_text(encoding="utf-8"))
        assert why["reason"] == reason
        assert why["message"]


@pytest.mark.slow
def test_hostile_files_are_rejected_and_the_daemon_keeps_going(storyline: Storyline) -> None:
    site = storyline
    site.write_config(inbox__max_file_bytes=1000)
    site.init()
    outside = site.root / "outside.txt"
    outside.write_text("A secret title\nA body line.\n", encoding="utf-8")
    daemon = site.start()

    expected = {
        "empty.txt": "empty",
        "binary.txt": "binary",
        "big.txt": "too-large",
        "undecodable.txt": "undecodable",
        "link.txt": "symlink",
        "folder": "directory",
        "pipe": "not-a-file",
    }
    site.drop("empty.txt", b"")
    site.drop("binary.txt", b"PK\x03\x04\x00\x00binary\x00data\x00" * 8)
    site.drop("big.txt", "A big title\n" + "word " * 400)
    # A UTF-8 byte-order mark followed by bytes that are not UTF-8.
    site.drop("undecodable.txt", b"\xef\xbb\xbfTitle \xff\xfe\xfd\xfc body\n")
    os.symlink(outside, site.inbox / "link.txt")
    os.mkdir(site.inbox / "folder")
    os.mkfifo(site.inbox / "pipe")  # no close event: only the rescan finds it

    def all_rejected() -> bool:
        return _rejection_reasons(site).keys() >= expected.keys() and not site.inbox_names()

    wait_for(all_rejected, 10.0, "every hostile file rejected", alive=daemon)
    assert _rejection_reasons(site) == expected
    for name, reason in expected.items():
        _assert_rejected(site, name, reason)
    assert outside.read_text(encoding="utf-8").startswith("A secret title")
    assert site.count("articles") == 0

    # Still ingesting.
    site.drop("good.txt", "A good title after the bad ones\nIts body.\nMore body.\n")
    wait_for(
        lambda: site.query("select title from articles") == [("A good title after the bad ones",)],
        5.0,
        "the good file",
        alive=daemon,
    )
    assert daemon.alive()
    assert daemon.errors() == []
    assert daemon.stop() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files: cannot test as root")
def test_unreadable_file_is_rejected(storyline: Storyline) -> None:
    site = storyline
    site.init()
    daemon = site.start()
    temp = site.inbox / ".secret.txt"
    temp.write_text("A title\nA body.\n", encoding="utf-8")
    temp.chmod(0)
    os.rename(temp, site.inbox / "secret.txt")
    wait_for(lambda: "secret.txt" in _rejection_reasons(site), 5.0, "rejection", alive=daemon)
    _assert_rejected(site, "secret.txt", "unreadable")
    assert daemon.alive()
    assert daemon.stop() == 0


# -- producers' temp names -----------------------------------------------------------


@pytest.mark.slow
def test_temp_names_are_never_ingested_until_renamed(storyline: Storyline) -> None:
    site = storyline
    site.write_config(inbox__rescan_seconds=1.0)
    site.init()
    daemon = site.start()

    (site.inbox / ".hidden.txt").write_text("Hidden title\nHidden body.\n", encoding="utf-8")
    (site.inbox / "x.txt.tmp").write_text("Temp title\nTemp body.\n", encoding="utf-8")
    # Proof that a full rescan has looked at them once they were stable: a FIFO made
    # after them, which only a rescan finds (it never sends a close event).
    os.mkfifo(site.inbox / "sentinel-1")
    wait_for(lambda: "sentinel-1" in _rejection_reasons(site), 10.0, "a full rescan", alive=daemon)
    assert site.count("events", "event_type like 'article.%'") == 0
    assert site.inbox_names() == [".hidden.txt", "x.txt.tmp"]

    os.rename(site.inbox / "x.txt.tmp", site.inbox / "x.txt")
    wait_for(
        lambda: site.query("select title from articles") == [("Temp title",)],
        5.0,
        "the renamed file",
        alive=daemon,
    )
    os.mkfifo(site.inbox / "sentinel-2")
    wait_for(lambda: "sentinel-2" in _rejection_reasons(site), 10.0, "another rescan", alive=daemon)
    assert site.count("events", "event_type like 'article.%'") == 1
    assert site.inbox_names() == [".hidden.txt"]
    assert [p.name for p in site.archived()] == ["x.txt"]
    assert daemon.stop() == 0


def test_an_inbox_removed_while_running_is_made_again_and_watched(storyline: Storyline) -> None:
    """rescan_seconds is long: the file dropped after the removal must be seen by the
    watch, not by a periodic rescan."""
    site = storyline
    site.write_config(inbox__rescan_seconds=600.0)
    site.init()
    daemon = site.start()
    site.drop("before.txt", "Before title\nBody.\n")
    wait_for(lambda: site.count("articles") == 1, 5.0, "the first file", alive=daemon)
    shutil.rmtree(site.inbox)
    wait_for(site.inbox.is_dir, 5.0, "the inbox made again", alive=daemon)
    site.drop("after.txt", "After title\nBody.\n")
    wait_for(lambda: site.count("articles") == 2, 5.0, "a file in the new inbox", alive=daemon)
    assert [e["event"] for e in daemon.errors()] == []
    assert daemon.stop() == 0


# -- single instance -----------------------------------------------------------------


def test_second_instance_refuses_to_start(storyline: Storyline) -> None:
    site = storyline
    site.init()
    first = site.start()
    second = site.cli("run", timeout=30)
    assert second.returncode == 3, second.stderr
    assert "another storyline daemon" in second.stderr
    assert str(first.pid) in second.stderr
    assert "Traceback" not in second.stderr
    assert first.alive()
    assert first.stop() == 0


# -- WAL pinning -------------------------------------------------------------------


@pytest.mark.slow
def test_open_reader_does_not_stop_ingest_and_wal_is_reclaimed(storyline: Storyline) -> None:
    site = storyline
    site.init()
    daemon = site.start()
    names = stage_articles(site.stage, 300)

    reader = sqlite3.connect(f"file:{site.db}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        pinned = reader.execute("SELECT count(*) FROM events").fetchone()[0]
        move_all(names, site.stage, site.inbox)
        wait_for(lambda: site.count("articles") == 300, 20.0, "300 articles", alive=daemon)
        wait_for(lambda: not site.inbox_names(), 10.0, "an empty inbox", alive=daemon)
        # The reader still sees its snapshot; the WAL holds everything since.
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == pinned
        assert os.path.getsize(f"{site.db}-wal") > 0
        reader.execute("COMMIT")
    finally:
        reader.close()

    def truncated() -> bool:
        with contextlib.closing(sqlite3.connect(site.db, timeout=10)) as writer:
            busy = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return busy == 0 and os.path.getsize(f"{site.db}-wal") == 0

    wait_for(truncated, 10.0, "a truncated WAL", interval=0.2)
    assert daemon.alive()
    assert daemon.errors() == []
    assert site.count("articles") == 300
    assert daemon.stop() == 0


# -- the package -----------------------------------------------------------------


def test_daemon_package_is_this_project() -> None:
    import daemon

    assert daemon.__file__ is not None
    assert Path(daemon.__file__).resolve().is_relative_to(REPO)
    # The same from a fresh interpreter started outside the source tree.
    result = subprocess.run(
        [sys.executable, "-c", "import daemon.cli, daemon; print(daemon.__file__)"],
        env=base_env(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve().is_relative_to(REPO)
