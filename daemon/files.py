"""Files from the inbox to events: read, hash, parse, decide, append (commit), and only
then move each file to archive/ (or rejected/, with a NAME.why.json sidecar).

A crash anywhere leaves every file either still in the inbox (its events, if committed,
make the re-offer a no-op) or moved after its events were committed: never lost, never
counted twice.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import structlog

from adapters.errors import UnusableInput
from adapters.textfile import parse_text_file
from daemon.ingest import Identified, identify
from daemon.recorder import Pending, record
from storage.blobs import Blob
from storage.events import InputRejected, to_iso
from storage.store import EventStore, NewEvent, StoredEvent

if TYPE_CHECKING:
    from daemon.loader import LoaderPool

log = structlog.get_logger(__name__)

INBOX_SOURCE = "inbox"
ADAPTER = "textfile/1"
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload", "~")
_POOL_MIN_FILES = 32  # fewer files load faster in the daemon than through a round trip


def is_ignored(name: str) -> bool:
    """Producers write under these names and rename when done."""
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Loaded:
    path: Path
    name: str
    blob: Blob  # the raw bytes, compressed (outside the append transaction)
    mtime_ns: int
    item: Identified

    @property
    def sha256(self) -> str:
        return self.blob.sha256


@dataclass(frozen=True, slots=True)
class Refused:
    path: Path
    name: str
    reason: str
    message: str
    sha256: str | None
    mtime_ns: int | None
    exists: bool = True


@dataclass(slots=True)
class BatchReport:
    new: int = 0
    revised: int = 0
    unchanged: int = 0
    rejected: int = 0
    positions: list[int] = field(default_factory=list)
    # this batch's events as appended, for the projection runner (not summed by add)
    events: list[StoredEvent] = field(default_factory=list, repr=False)

    @property
    def files(self) -> int:
        return self.new + self.revised + self.unchanged + self.rejected

    def add(self, other: BatchReport) -> None:
        self.new += other.new
        self.revised += other.revised
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.positions.extend(other.positions)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSettings:
    inbox: Path
    archive: Path
    rejected: Path
    after_ingest: str = "archive"
    max_file_bytes: int = 10 * 1024 * 1024
    keep_in_place: bool = False  # one-shot ingest of files outside the inbox


class FileIngestor:
    def __init__(
        self, settings: FileSettings, store: EventStore, *, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._made_day: Path | None = None

    def ingest(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int | None = None,
        loader: LoaderPool | None = None,
        stop: Callable[[], bool] | None = None,
        each: Callable[[list[Path], BatchReport], None] | None = None,
        more: Callable[[int], list[Path]] | None = None,
    ) -> BatchReport:
        """Ingest ``paths`` (files in the inbox); returns what happened.

        With ``batch_size``, in batches of that many files, each committed and then
        moved on its own, then passed to ``each``; ``stop`` is checked between batches
        (the batch in flight always finishes). With ``loader``, files are read and
        parsed in its worker processes, the next batch while this one is recorded.
        ``more(n)``, if given, is asked for up to ``n`` further paths whenever fewer
        than a batch are left to load, so a stream of arrivals keeps the pipeline full.
        """
        pending: deque[Path] = deque(dict.fromkeys(paths))
        seen = set(pending)  # pending or loading: offered again, it is the same file
        size = batch_size or max(1, len(pending))
        total = BatchReport()
        loading: deque[tuple[list[Path], Callable[[], list[Loaded | Refused]]]] = deque()

        def next_batch() -> list[Path]:
            if more is not None and batch_size and len(pending) < size:
                for path in more(size - len(pending)):
                    if path not in seen:
                        seen.add(path)
                        pending.append(path)
            return [pending.popleft() for _ in range(min(size, len(pending)))]

        started = 0

        def load_ahead() -> None:  # keep two batches loading, unless stopping
            nonlocal started
            while len(loading) < 2:
                if started and stop and stop():
                    return
                batch = next_batch()
                if not batch:
                    return
                loading.append((batch, self._start_loading(loader, batch)))
                started += 1

        load_ahead()
        try:
            while loading:
                batch, load = loading.popleft()
                inputs = load()
                report, moved = self._record(inputs, loader)  # committed; moves queued
                load_ahead()  # behind the moves, so they are done first
                moved()  # every file of the batch archived before it is reported
                seen.difference_update(batch)  # a new file under the same name may come
                total.add(report)
                if each is not None:
                    each(batch, report)
                if stop and stop():
                    break
        finally:
            while loading:  # an error or a stop: drain the worker answers
                loading.popleft()[1]()
        return total

    def _start_loading(
        self, loader: LoaderPool | None, paths: list[Path]
    ) -> Callable[[], list[Loaded | Refused]]:
        if loader is None or len(paths) < _POOL_MIN_FILES:
            return lambda: [load_file(self.settings, p) for p in paths]
        return loader.submit(self.settings, paths)

    def _record(
        self, inputs: list[Loaded | Refused], loader: LoaderPool | None = None
    ) -> tuple[BatchReport, Callable[[], None]]:
        """Append the batch's events (committed on return), then start moving its files:
        in ``loader``'s workers for a large batch; the returned function waits for that."""
        loaded = [x for x in inputs if isinstance(x, Loaded)]
        refused = [x for x in inputs if isinstance(x, Refused)]
        blobs = {x.sha256: x.blob for x in loaded}
        now = self.clock()
        pending = [
            Pending(x.item, INBOX_SOURCE, {"source_id": INBOX_SOURCE, "adapter": ADAPTER,
                                           "input": x.name, "raw_sha256": x.sha256})
            for x in loaded
        ]  # fmt: skip
        rejections = [self._rejection_event(r, now) for r in refused]
        result, appended = record(self.store, pending, now, blobs=list(blobs.values()),
                                  extra=rejections)  # fmt: skip
        report = BatchReport(
            new=result.count("new"), revised=result.count("revised"),
            unchanged=result.count("unchanged"), rejected=len(refused),
        )  # fmt: skip
        if appended is not None and appended.last_position is not None:
            report.positions.append(appended.last_position)
            report.events = list(appended.events)
        moves = self._disposals(loaded, now)
        if loader is not None and len(moves) >= _POOL_MIN_FILES:
            moving = loader.submit_moves(moves)
        else:
            vanished = dispose_all(moves)
            moving = lambda: vanished  # noqa: E731
        for refusal in refused:
            self._quarantine(refusal, now)

        def moved() -> None:
            for name in moving():
                log.warning("file vanished after ingest", file=name)

        return report, moved

    # -- deciding ------------------------------------------------------------------

    def _rejection_event(self, refusal: Refused, now: datetime) -> NewEvent:
        kept = self._rejected_path(refusal) if refusal.exists else None
        unique = (
            f"{refusal.name}|{refusal.reason}|{refusal.sha256}|{refusal.mtime_ns}"
            if refusal.mtime_ns is not None
            else f"{refusal.name}|{refusal.reason}|{uuid.uuid4()}"
        )
        key = "rejected:" + hashlib.sha256(unique.encode()).hexdigest()
        event = InputRejected(
            input=str(refusal.path),
            reason=refusal.reason,
            message=refusal.message,
            kept_at=str(kept) if kept else None,
            content_sha256=refusal.sha256,
            observed_at=now,
        )
        stream = "rejection-" + str(uuid.uuid5(uuid.NAMESPACE_URL, key))
        return NewEvent(
            stream_id=stream,
            stream_version=1,
            idempotency_key=key,
            event=event,
            metadata={"source_id": INBOX_SOURCE, "input": refusal.name},
        )

    # -- moving --------------------------------------------------------------------

    def _disposals(self, loaded: Sequence[Loaded], now: datetime) -> list[Disposal]:
        mode = "keep" if self.settings.keep_in_place else self.settings.after_ingest
        if mode != "archive":
            return [Disposal(mode, str(x.path), None, x.name) for x in loaded]
        day = os.fspath(self._day_dir(self.settings.archive / now.strftime("%Y/%m/%d")))
        return [
            Disposal(mode, str(x.path), f"{day}/{x.name.rpartition('/')[2]}", x.name)
            for x in loaded
        ]

    def _rejected_path(self, refusal: Refused) -> Path:
        if self.settings.keep_in_place:
            return refusal.path
        return _free_name(self.settings.rejected / Path(refusal.name).name)

    def _quarantine(self, refusal: Refused, now: datetime) -> None:
        log.warning(
            "input rejected", file=refusal.name, reason=refusal.reason, message=refusal.message
        )
        if not refusal.exists or self.settings.keep_in_place:
            return
        target = self._rejected_path(refusal)
        self._dir(target.parent)
        sidecar = target.with_name(target.name + ".why.json")
        why = {
            "input": str(refusal.path),
            "reason": refusal.reason,
            "message": refusal.message,
            "sha256": refusal.sha256,
            "rejected_at": to_iso(now),
        }
        sidecar.write_text(json.dumps(why, indent=2) + "\n", encoding="utf-8")
        try:
            _move_out(refusal.path, target)
        except FileNotFoundError:
            log.warning("rejected file vanished before it could be kept", file=refusal.name)

    def _day_dir(self, directory: Path) -> Path:
        # made once per day; if an operator removes it, _move_out makes it again
        if directory != self._made_day:
            directory.mkdir(parents=True, exist_ok=True)
            self._made_day = directory
        return directory

    @staticmethod
    def _dir(directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)  # an operator may have removed it
        return directory


# -- moving (in the daemon, or in a LoaderPool worker) -----------------------------------


class Disposal(NamedTuple):
    """What to do with one committed file: ``archive`` (to ``target``), ``delete`` or
    ``keep``. Plain strings: thousands of these are pickled to the loader workers."""

    mode: str
    path: str
    target: str | None
    name: str


def dispose_all(moves: Sequence[Disposal]) -> list[str]:
    """Archive or delete committed files, in order; returns the names of those that had
    vanished. Safe to repeat: a file already archived is gone from the inbox, and a
    crash between link and unlink is finished by :func:`_move_out`."""
    vanished = []
    for move in moves:
        try:
            if move.mode == "archive":
                assert move.target is not None
                _move_out(move.path, move.target)
            elif move.mode == "delete":
                os.unlink(move.path)
        except FileNotFoundError:
            vanished.append(move.name)
    return vanished


# -- reading (in the daemon, or in a LoaderPool worker) ------------------------------------


def _vanished(path: Path, name: str, mtime_ns: int | None) -> Refused:
    message = f"{name} was deleted before it was read"
    return Refused(path, name, "vanished", message, None, mtime_ns, exists=False)


def load_file(settings: FileSettings, path: Path) -> Loaded | Refused:
    """Read, hash, parse, identify and compress one file; no side effects."""
    name = _relative(settings, path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return _vanished(path, name, None)
    refusal = _refuse_by_stat(settings, path, name, info)
    if refusal:
        return refusal
    try:
        data = _read_nofollow(path, info.st_size)
    except FileNotFoundError:
        return _vanished(path, name, info.st_mtime_ns)
    except OSError as exc:
        return Refused(
            path,
            name,
            "unreadable",
            f"{name} cannot be read: {exc.strerror}",
            None,
            info.st_mtime_ns,
        )
    return _parse(path, name, data, info.st_mtime_ns)


def _refuse_by_stat(
    settings: FileSettings, path: Path, name: str, info: os.stat_result
) -> Refused | None:
    mode, mtime = info.st_mode, info.st_mtime_ns
    if stat.S_ISLNK(mode):
        return Refused(
            path,
            name,
            "symlink",
            f"{name} is a symbolic link; links are not followed",
            None,
            mtime,
        )
    if stat.S_ISDIR(mode):
        return Refused(
            path,
            name,
            "directory",
            f"{name} is a directory; the inbox is not recursive",
            None,
            mtime,
        )
    if not stat.S_ISREG(mode):
        return Refused(path, name, "not-a-file", f"{name} is not a regular file", None, mtime)
    limit = settings.max_file_bytes
    if info.st_size > limit:
        return Refused(
            path,
            name,
            "too-large",
            f"{name} is {info.st_size} bytes, over the inbox.max_file_bytes limit of {limit}",
            None,
            mtime,
        )
    return None


def _parse(path: Path, name: str, data: bytes, mtime_ns: int) -> Loaded | Refused:
    digest = hashlib.sha256(data).hexdigest()
    try:
        observation = parse_text_file(data, name=name)
    except UnusableInput as exc:
        return Refused(path, name, exc.reason, str(exc), digest, mtime_ns)
    item = identify(observation, relative_path=name)
    return Loaded(path, name, Blob.of(data, digest), mtime_ns, item)


def _relative(settings: FileSettings, path: Path) -> str:
    try:
        return path.relative_to(settings.inbox).as_posix()
    except ValueError:
        return path.name


def _read_nofollow(path: Path, size_hint: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks = []
        while chunk := os.read(fd, size_hint + 1):  # one read for a file that did not grow
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _move_out(source: str | Path, target: str | Path) -> None:
    """Move a file out of the inbox as link + unlink rather than rename: a rename would
    silently replace an archived file of the same name, a link refuses to. A crash
    between the two leaves the file in both places: the next attempt finds the same
    inode already there and only unlinks.
    """
    try:
        os.link(source, target, follow_symlinks=False)  # the usual case: two syscalls in all
    except FileExistsError:
        if os.path.samefile(source, target):
            os.unlink(source)
            return
        _link_free(source, Path(target))
    except FileNotFoundError:
        if not os.path.lexists(source):
            raise  # the file itself is gone
        Path(target).parent.mkdir(parents=True, exist_ok=True)  # someone removed the folder
        _link_free(source, Path(target))
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        # another filesystem (copy, fsync, unlink), or a filesystem without hard links
        shutil.move(source, _free_name(Path(target)))
        return
    os.unlink(source)


def _link_free(source: str | Path, target: Path) -> None:
    """Hard-link ``source`` under the first free ``stem.N.suffix`` name beside ``target``."""
    while True:
        try:
            os.link(source, _free_name(target), follow_symlinks=False)
            return
        except FileExistsError:
            continue  # taken in between: look again


def _free_name(target: Path) -> Path:
    """``target``, or ``stem.N.suffix`` for the first N that is not taken."""
    if not os.path.lexists(target):
        return target
    for n in range(1, 100_000):
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise OSError(errno.EEXIST, f"no free name for {target}")


# -- loading in worker processes ---------------------------------------------------------
