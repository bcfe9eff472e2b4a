"""Edge cases an operator hits: big batches through the loader processes, the same bad
file dropped again, an archive on another filesystem, folders removed while running."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import from_mapping
from daemon.service import Services

REPO = Path(__file__).parents[2]

_BIG_BATCH = """
import sys, tempfile
from pathlib import Path
from daemon.config import from_mapping
from daemon.loader import LoaderPool
from daemon.service import Services

def main():
    base = Path(tempfile.mkdtemp())
    services = Services(from_mapping({}, base_dir=base))
    services.prepare()
    inbox = services.settings.inbox_dir
    n = 12000
    for i in range(n):
        name = f"a-long-file-name-so-that-a-job-overflows-the-pipe-buffer-{i:06d}.txt"
        (inbox / name).write_text(f"Title {i}\\nBody {i}.\\n")
    pool = LoaderPool(2)
    report = services.ingestor.ingest(sorted(inbox.iterdir()), batch_size=6000, loader=pool)
    pool.close()
    services.close()
    print(report.new, len(list(inbox.iterdir())))

if __name__ == "__main__":
    main()
"""


def test_large_batches_through_the_loader_processes_do_not_deadlock(tmp_path: Path) -> None:
    """Jobs larger than a pipe buffer while workers send large answers: before the
    answer reader existed, both sides blocked in send() forever."""
    script = tmp_path / "big_batch.py"
    script.write_text(_BIG_BATCH)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["12000", "0"]


@pytest.fixture
def services(tmp_path: Path) -> Services:
    made = Services(from_mapping({}, base_dir=tmp_path))
    made.prepare()
    return made


def _rows(services: Services, sql: str) -> list[tuple[object, ...]]:
    services.projector.catch_up()
    with services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_the_same_bad_file_dropped_again_is_kept_again_and_blocks_nothing(
    services: Services,
) -> None:
    inbox = services.settings.inbox_dir
    (inbox / "empty.txt").write_bytes(b"")
    services.ingestor.ingest([inbox / "empty.txt"])
    kept = services.settings.rejected_dir / "empty.txt"
    assert kept.exists()
    # an operator copies it back with its mtime (cp -p): same bytes, same mtime, same name
    shutil.copy2(kept, inbox / "empty.txt")
    (inbox / "good.txt").write_text("A good title\nBody.\n")
    report = services.ingestor.ingest(sorted(inbox.iterdir()))
    assert (report.new, report.rejected) == (1, 1)
    assert sorted(os.listdir(inbox)) == []
    assert (services.settings.rejected_dir / "empty.1.txt").exists()
    services.close()


def test_an_archive_on_another_filesystem_still_receives_the_files(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to archive onto")
    archive = Path(tempfile.mkdtemp(dir=shm))
    try:
        services = Services(from_mapping({"inbox": {"archive": str(archive)}}, base_dir=tmp_path))
        services.prepare()
        inbox = services.settings.inbox_dir
        (inbox / "a.txt").write_text("Title\nBody.\n")
        report = services.ingestor.ingest([inbox / "a.txt"])
        assert report.new == 1 and os.listdir(inbox) == []
        assert [p.name for p in archive.rglob("*.txt")] == ["a.txt"]
        services.close()
    finally:
        shutil.rmtree(archive, ignore_errors=True)


def test_folders_removed_while_running_are_made_again(services: Services) -> None:
    inbox = services.settings.inbox_dir
    (inbox / "a.txt").write_text("Title A\nBody.\n")
    services.ingestor.ingest([inbox / "a.txt"])
    shutil.rmtree(services.settings.archive_dir)
    shutil.rmtree(services.settings.rejected_dir)
    (inbox / "b.txt").write_text("Title B\nBody.\n")
    (inbox / "c.txt").write_bytes(b"\x00\x01")
    report = services.ingestor.ingest(sorted(inbox.iterdir()))
    assert (report.new, report.rejected) == (1, 1)
    assert os.listdir(inbox) == []
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    assert (services.settings.archive_dir / day / "b.txt").exists()
    assert (services.settings.rejected_dir / "c.txt.why.json").exists()
    services.close()
