"""The inbox watcher. inotify (through watchdog) is only a hint: a periodic full rescan
is what guarantees that every file is seen, including files dropped while the daemon
was down, files whose events the kernel queue dropped, and inboxes on network
filesystems (where the polling observer is used instead).

Hints come from closed-after-write and moved-in events only, never ``created``: a
created file may still be half written. A file found by a rescan is taken once its
mtime is at least ``stable_seconds`` old.

With inotify the watcher registers on watchdog's inotify reader (``InotifyFD``, one
thread) directly rather than through its observer: the observer's emitter, dispatcher
and move-pairing queue cost three threads and a linear scan per moved file, all
competing with the writer for the GIL, for a daemon that needs only the names of files
closed or moved into the inbox.
"""

from __future__ import annotations

import os
import queue
import threading
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
from watchdog.observers.inotify_c import (
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchDescriptor,
)
from watchdog.observers.polling import PollingObserver

from daemon.files import is_ignored

log = structlog.get_logger(__name__)

# The only events a hint comes from (the polling observer's filter).
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


_IN = InotifyConstants
# The kernel's mask: no IN_DELETE for our own unlinks, no IN_MODIFY per write, no
# IN_OPEN, no IN_MOVED_FROM; the events we never use are never read. Q_OVERFLOW and
# IGNORED come regardless.
_INOTIFY_MASK = Mask(
    _IN.IN_CLOSE_WRITE | _IN.IN_MOVED_TO | _IN.IN_CREATE
    | _IN.IN_DELETE_SELF | _IN.IN_MOVE_SELF | _IN.IN_ONLYDIR
)  # fmt: skip


class _InotifyHints:
    """Callback of one inotify watch on the inbox (watchdog's ``WatchCallback``)."""

    def __init__(
        self, inbox: Path, sink: queue.SimpleQueue[Path], lost: Callable[[str], None]
    ) -> None:
        self.inbox = inbox
        self.sink = sink
        self.lost = lost  # events were lost or the watch is gone: rescan soon

    def on_event(self, event: InotifyEvent) -> None:
        mask = event.mask
        if mask & (_IN.IN_DELETE_SELF | _IN.IN_MOVE_SELF):
            self.lost("moved")  # the watch would follow the folder: drop it
            return
        name = os.fsdecode(event.name)
        if not name or is_ignored(name):
            return
        path = self.inbox / name
        if mask & (_IN.IN_CLOSE_WRITE | _IN.IN_MOVED_TO):
            self.sink.put(path)
        elif mask & _IN.IN_CREATE and (mask & _IN.IN_ISDIR or os.path.islink(path)):
            # a directory or a symlink never closes: its creation is the hint
            self.sink.put(path)

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        self.lost("gone")  # the kernel dropped it already

    def on_queue_overflow(self) -> None:
        log.warning("inotify queue overflowed; rescanning the inbox")
        self.lost("overflow")


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
        self._inotify: InotifyFD | None = None
        self._watch: WatchDescriptor | None = None  # the inbox's inotify watch while it holds
        self._lost = threading.Event()  # hints were lost: the caller should rescan now
        self.unstable = 0  # files seen by the last scan but not yet stable

    def start(self) -> str:
        """Start the observer; returns the kind actually used."""
        kind = self._choose_kind()
        if kind == "inotify":
            try:
                self._start_inotify()
                return kind
            except OSError as exc:
                self.stop()
                log.error("inotify unavailable, falling back to polling", error=str(exc))
                kind = "polling"
        self._observer = self._start_polling()
        return kind

    def stop(self) -> None:
        if self._inotify is not None:
            self._watch = None  # closing reports the watch as deleted: not a loss
            self._inotify.stop()  # closes the descriptor, which ends its thread
            self._inotify.join(timeout=5)
            self._inotify = None
            self._lost.clear()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def rescan_wanted(self) -> bool:
        """True once after hints were lost (a queue overflow, the inbox's watch gone);
        the rescan that follows also watches the inbox again."""
        if not self._lost.is_set():
            return False
        self._lost.clear()
        return True

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
        """Every file in the inbox that is ready: stable, not a temp or dot name. An
        inbox someone removed is made again, and watched again."""
        if not self.inbox.is_dir():
            log.warning("the inbox was removed; making it again", inbox=str(self.inbox))
            self.inbox.mkdir(parents=True, exist_ok=True)
        if self._inotify is not None and self._watch is None:
            try:
                self._add_watch()
            except OSError as exc:  # the next scan tries again
                log.warning("cannot watch the inbox again", error=str(exc))
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

    def _start_inotify(self) -> None:
        self._inotify = InotifyFD()  # our own reader thread, not watchdog's shared one
        self._inotify.start()
        self._add_watch()

    def _add_watch(self) -> None:
        assert self._inotify is not None
        hints = _InotifyHints(self.inbox, self.hints, self._watch_lost)
        self._watch = self._inotify.add_callback(
            os.fsencode(self.inbox), _INOTIFY_MASK, hints, CallbackId(id(self))
        )

    def _watch_lost(self, why: str) -> None:
        """From the reader thread: ``overflow`` (events lost, the watch holds), ``gone``
        (the inbox was removed) or ``moved`` (the inbox was renamed away)."""
        if why != "overflow" and self._watch is not None:
            log.warning("the inbox's inotify watch is gone; rescanning", why=why)
            watch, self._watch = self._watch, None
            if why == "moved" and self._inotify is not None:
                self._inotify.remove_callbacks([(watch, CallbackId(id(self)))])
        self._lost.set()

    def _start_polling(self) -> BaseObserver:
        observer = PollingObserver(timeout=1.0)
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
    try:
        listing = os.scandir(inbox)
    except FileNotFoundError:  # removed: the next scan makes it again
        return
    with listing as entries:
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
