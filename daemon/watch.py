"""The inbox watcher. inotify (through watchdog) is only a hint: a periodic full rescan
is what guarantees that every file is seen, including files dropped while the daemon
was down, files whose events the kernel queue dropped, and inboxes on network
filesystems (where the polling observer is used instead).

Hints come from closed-after-write and moved-in events only, never ``created``: a
created file may still be half written. A file found by a rescan is taken once its
mtime is at least ``stable_seconds`` old.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from daemon.files import is_ignored

log = structlog.get_logger(__name__)

# The only events a hint comes from. With inotify this is also the kernel's mask (no
# IN_DELETE for our own unlinks, no IN_MODIFY per write, no IN_OPEN), so the events we
# never use are neither read nor dispatched: the watcher thread competes for the GIL.
_HINT_EVENTS: list[type[FileSystemEvent]] = [
    FileClosedEvent,
    FileMovedEvent,
    FileCreatedEvent,
    DirCreatedEvent,
]
_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse", "9p", "ceph", "glusterfs")


class _Hints(FileSystemEventHandler):
    def __init__(self, inbox: Path, sink: queue.SimpleQueue[Path]) -> None:
        self.inbox = inbox
        self.sink = sink

    def on_closed(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._offer(os.fsdecode(event.src_path))

    def on_created(self, event: FileSystemEvent) -> None:
        # A regular file is announced by its close; a directory or a symlink never
        # closes, so its creation is the hint (both are refused when read).
        path = os.fsdecode(event.src_path)
        if event.is_directory or os.path.islink(path):
            self._offer(path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            self._offer(os.fsdecode(event.dest_path))

    def _offer(self, raw: str) -> None:
        path = Path(raw)
        if path.parent == self.inbox and not is_ignored(path.name):
            self.sink.put(path)


class InboxWatcher:
    """Hints from the filesystem plus the rescan that makes them unnecessary."""

    def __init__(
        self,
        inbox: Path,
        *,
        observer: str = "auto",
        stable_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox.resolve()
        self.mode = observer
        self.stable_seconds = stable_seconds
        self.clock = clock
        self.hints: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._observer: BaseObserver | None = None
        self.unstable = 0  # files seen by the last scan but not yet stable

    def start(self) -> str:
        """Start the observer; returns the kind actually used."""
        kind = self._choose_kind()
        try:
            self._observer = self._start(kind)
        except OSError as exc:
            if kind == "polling":
                raise
            log.error("inotify unavailable, falling back to polling", error=str(exc))
            kind = "polling"
            self._observer = self._start(kind)
        return kind

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def wait_for_hints(self, timeout: float, limit: int) -> list[Path]:
        """Block up to ``timeout`` for a first hint, then take what is already queued."""
        try:
            first = self.hints.get(timeout=timeout) if timeout > 0 else self.hints.get_nowait()
        except queue.Empty:
            return []
        found = [first]
        while len(found) < limit:
            try:
                found.append(self.hints.get_nowait())
            except queue.Empty:
                break
        return found

    def scan(self) -> list[Path]:
        """Every file in the inbox that is ready: stable, not a temp or dot name."""
        horizon = self.clock() - self.stable_seconds
        found = list(inbox_entries(self.inbox))
        ready = sorted(path for path, mtime in found if mtime <= horizon)
        self.unstable = len(found) - len(ready)
        return ready

    def backlog(self) -> tuple[int, float | None]:
        return backlog(self.inbox, self.clock())

    def _choose_kind(self) -> str:
        if self.mode != "auto":
            return self.mode
        fs = filesystem_type(self.inbox)
        if fs and fs.startswith(_NETWORK_FS):
            log.info("inbox on a network filesystem, using polling", filesystem=fs)
            return "polling"
        return "inotify"

    def _start(self, kind: str) -> BaseObserver:
        # Full events: a file moved in from an unwatched folder arrives as a move (a
        # hint), not as a bare "created" (which we must ignore for regular files).
        observer: BaseObserver = (
            PollingObserver(timeout=1.0)
            if kind == "polling"
            else InotifyObserver(generate_full_events=True)
        )
        observer.schedule(
            _Hints(self.inbox, self.hints),
            str(self.inbox),
            recursive=False,
            event_filter=_HINT_EVENTS,
        )
        observer.daemon = True
        observer.start()
        return observer


def inbox_entries(inbox: Path) -> Iterator[tuple[Path, float]]:
    """(path, mtime) of every entry waiting in the inbox, temp and dot names left out."""
    with os.scandir(inbox) as entries:
        for entry in entries:
            if is_ignored(entry.name):
                continue
            try:
                yield Path(entry.path), entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue


def backlog(inbox: Path, now: float) -> tuple[int, float | None]:
    """Files waiting in the inbox, and the age in seconds of the oldest."""
    mtimes = [mtime for _, mtime in inbox_entries(inbox)]
    return len(mtimes), (now - min(mtimes) if mtimes else None)


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path``, from /proc/mounts (Linux)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind
