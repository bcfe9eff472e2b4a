"""The inbox watcher against a real inotify: which filesystem events become hints."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from daemon.watch import InboxWatcher


def _hints(watcher: InboxWatcher, want: int, *, seconds: float = 5.0) -> list[str]:
    """Hints until ``want`` have come or ``seconds`` have passed (bounded either way)."""
    found: list[str] = []
    deadline = time.monotonic() + seconds
    while len(found) < want and time.monotonic() < deadline:
        found += [p.name for p in watcher.wait_for_hints(0.05, 100)]
    return found


@pytest.fixture
def watcher(tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    w = InboxWatcher(inbox, observer="inotify")
    assert w.start() == "inotify"
    yield w
    w.stop()


def test_closed_and_moved_in_files_are_hinted_created_ones_are_not(
    watcher: InboxWatcher, tmp_path: Path
) -> None:
    inbox = watcher.inbox
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("Title\nBody.\n")
    fd = os.open(inbox / "open.txt", os.O_WRONLY | os.O_CREAT)  # created, still open
    assert _hints(watcher, 1, seconds=0.3) == []
    os.write(fd, b"Title\nBody.\n")
    os.close(fd)
    os.rename(outside, inbox / "moved-in.txt")  # from a folder that is not watched
    (inbox / ".hidden.txt").write_text("x")
    (inbox / "partial.txt.part").write_text("x")
    os.mkdir(inbox / "a-directory")
    os.symlink("/etc/hostname", inbox / "a-link.txt")
    assert sorted(_hints(watcher, 4)) == ["a-directory", "a-link.txt", "moved-in.txt", "open.txt"]


def test_moving_files_out_holds_back_nothing(watcher: InboxWatcher, tmp_path: Path) -> None:
    """A rename out of the inbox (what an operator or another tool may do) must not delay
    the hints behind it: nothing waits to be paired with a move."""
    archive = tmp_path / "archive"
    archive.mkdir()
    (watcher.inbox / "first.txt").write_text("Title\nBody.\n")
    assert _hints(watcher, 1) == ["first.txt"]
    os.rename(watcher.inbox / "first.txt", archive / "first.txt")
    (watcher.inbox / "second.txt").write_text("Title\nBody.\n")
    assert watcher.wait_for_hints(0.4, 10)[0].name == "second.txt"


def test_a_removed_inbox_asks_for_a_rescan_and_is_watched_again(
    watcher: InboxWatcher,
) -> None:
    inbox = watcher.inbox
    assert not watcher.rescan_wanted()
    shutil.rmtree(inbox)
    deadline = time.monotonic() + 5
    while not watcher._lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watcher.rescan_wanted()
    assert not watcher.rescan_wanted()  # once
    assert watcher.scan() == []  # the inbox is made again, and watched again
    assert inbox.is_dir()
    (inbox / "after.txt").write_text("Title\nBody.\n")
    assert _hints(watcher, 1) == ["after.txt"]


def test_an_inbox_made_again_by_someone_else_after_the_rescan_is_watched_at_the_next(
    watcher: InboxWatcher,
) -> None:
    inbox = watcher.inbox
    shutil.rmtree(inbox)
    deadline = time.monotonic() + 5
    while not watcher.rescan_wanted() and time.monotonic() < deadline:
        time.sleep(0.01)
    inbox.mkdir()
    (inbox / "waiting.txt").write_text("Title\nBody.\n")
    os.utime(inbox / "waiting.txt", (time.time() - 60, time.time() - 60))
    assert [p.name for p in watcher.scan()] == ["waiting.txt"]
    (inbox / "next.txt").write_text("Title\nBody.\n")
    assert _hints(watcher, 1) == ["next.txt"]


def test_polling_leaves_new_files_to_the_rescan_which_waits_until_they_are_stable(
    tmp_path: Path,
) -> None:
    """On a network filesystem a created file may still be half written and no close is
    ever reported: the rescan takes it once its mtime is ``stable_seconds`` old."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    now = [time.time()]
    w = InboxWatcher(inbox, observer="polling", stable_seconds=2.0, clock=lambda: now[0])
    assert w.start() == "polling"
    try:
        (inbox / "a.txt").write_text("Title\nBody.\n")
        assert _hints(w, 1, seconds=2.5) == []
        assert (w.scan(), w.unstable) == ([], 1)
        now[0] += 3
        assert ([p.name for p in w.scan()], w.unstable) == (["a.txt"], 0)
    finally:
        w.stop()


def test_stopping_the_watcher_is_not_reported_as_a_lost_watch(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    w = InboxWatcher(inbox, observer="inotify")
    w.start()
    with capture_logs() as logs:
        w.stop()
    assert [e for e in logs if e["log_level"] in ("warning", "error")] == []
    assert not w.rescan_wanted()
