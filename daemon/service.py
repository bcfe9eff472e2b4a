"""The composition root and the daemon's main loop.

``Daemon.run``: lock, check or create the schema, scan the inbox once, catch the
projections up, then READY=1; then loop: wait for hints, rescan when due, ingest in
batches, project, ping the watchdog only when the loop made progress. SIGTERM/SIGINT
finish the batch in flight and return 0. SIGHUP reloads what can be reloaded.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from adapters.feed import FeedParserPool
from adapters.http import HttpClient, HttpSettings
from daemon import faults
from daemon.config import Settings, load
from daemon.errors import ConfigError
from daemon.feedwork import extract_and_identify
from daemon.files import BatchReport, FileIngestor, FileSettings
from daemon.loader import LoaderPool
from daemon.lock import InstanceLock
from daemon.metrics import MetricsServer
from daemon.notify import Notifier, WatchdogGate
from daemon.policy import Policy
from daemon.schedule import Poller, Ticker
from daemon.sources import Registry
from daemon.status import summary_line
from daemon.watch import InboxWatcher
from storage.checkpoint import WalCheckpointer
from storage.db import make_engine, sqlite_path
from storage.errors import SchemaMissing, StoreUnavailable
from storage.projections.runner import ProjectionRunner
from storage.schema import check_schema, create_schema
from storage.store import EventStore

log = structlog.get_logger(__name__)

_STATUS_EVERY = 5.0
_START_EXTENSION = 60.0  # seconds more to start, asked for per batch of the first scan
_HANDLED_TTL = 600.0
_PIPELINE = 4  # batches handed to the ingestor at once: it loads one while recording another
_KEEP_PIPELINE_SECONDS = 5.0  # how long hints that keep coming join one ingest call
_LOADERS = 2  # file loader processes (reading and parsing beside the database work)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Services:
    """The long-lived parts, wired once from settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        background_checkpoints: bool = False,
    ) -> None:
        self.settings = settings
        self.engine: Engine = open_engine(
            settings,
            synchronous=settings.storage.synchronous,
            autocheckpoint=not background_checkpoints,  # the daemon runs a WalCheckpointer
        )
        self.store = EventStore(self.engine, clock=clock)
        self.projector = ProjectionRunner(self.engine)
        self.ingestor = FileIngestor(file_settings(settings), self.store, clock=clock)
        self.registry = Registry(self.engine, self.store, self.projector)
        self._poller: Poller | None = None
        # owned here, not by the poller, so the ticker can start without making one
        self.stopping = threading.Event()
        self._clock = clock

    def prepare(self) -> None:
        """Folders and schema; idempotent (``storyline init`` and daemon start). A
        folder that cannot be made is a ConfigError naming its key; a database that
        cannot be reached, StoreUnavailable naming storage.url."""
        database = sqlite_path(self.engine)
        for key, folder in (
            ("inbox.path", self.settings.inbox_dir),
            ("inbox.archive", self.settings.archive_dir),
            ("inbox.rejected", self.settings.rejected_dir),
            ("storage.url", Path(database).parent if database else None),
        ):
            if folder is None:
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(key, f"cannot create {folder}: {exc.strerror}") from None
        with self._reaching():
            create_schema(self.engine)

    def require_schema(self) -> None:
        """For commands that use an existing database: SchemaMissing if ``storyline
        init`` has not set it up (a SQLite file that does not exist is not created),
        StoreUnavailable naming storage.url if it cannot be reached."""
        database = sqlite_path(self.engine)
        missing = SchemaMissing(
            f"database {self.database_name()} is not initialised: run `storyline init`"
        )
        if database is not None and not os.path.exists(database):
            raise missing
        try:
            with self._reaching():
                check_schema(self.engine)
        except SchemaMissing:
            raise missing from None

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """The driver's errors on opening the database (refused, no such database,
        authentication, not a database file) as one line naming storage.url."""
        try:
            yield
        except DBAPIError as exc:
            reason = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
            raise StoreUnavailable(
                f"storage.url: cannot use the database {self.database_name()}: {reason}"
            ) from exc

    def database_name(self) -> str:
        """The SQLite file, or the URL without its password."""
        database = sqlite_path(self.engine)
        if database is not None:
            return database
        return make_url(self.settings.database_url).render_as_string(hide_password=True)

    @property
    def poller(self) -> Poller:
        """The poller, with its HTTP client and feed-parsing processes, made on first use."""
        if self._poller is None:
            s = self.settings
            http = HttpClient(HttpSettings(**dataclasses.asdict(s.http)))
            parser = FeedParserPool(
                s.scheduler.parser_processes or None,
                timeout=s.scheduler.parse_timeout,
                target=extract_and_identify,
            )
            self._poller = Poller(
                self.engine,
                self.store,
                http,
                parser,
                policy=policy_of(s),
                clock=self._clock,
                workers=s.scheduler.workers,
                lease_seconds=s.scheduler.lease_seconds,
                follow=self.registry.follow_links,
                stopping=self.stopping,
                project=self.projector.catch_up,
            )
        return self._poller

    def close(self) -> None:
        if self._poller is not None:
            self._poller.http.close()
            self._poller.parser.close()
        self.engine.dispose()


# The daemon allocates many short-lived containers for each event (payloads, rows,
# dataclasses) and makes almost no reference cycles. With CPython's default thresholds
# (700, 10, 10) a 1,000-feed cold poll cycle ran about 490 collections, 0.3-0.4 s with
# the GIL held (a tenth of the polling process's CPU); (20000, 10, 100) left 10-11 and
# 0.12-0.18 s, these one and 0.02 s. Garbage without cycles is freed at once anyway.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collector settings for a long-running daemon process: what startup made
    (modules, schema, configuration) is frozen out of every collection, and young
    objects are collected less often. Called once the process has its services."""
    gc.collect()  # startup's own garbage is not frozen for good
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def open_engine(settings: Settings, **options: Any) -> Engine:
    """The engine for storage.url (no connection yet); a database driver that is not
    installed is a ConfigError naming storage.url."""
    try:
        return make_engine(settings.database_url, **options)
    except ImportError as exc:
        hint = "the postgres extra installs psycopg: pip install 'storyline[postgres]'"
        if make_url(settings.database_url).drivername not in ("postgresql", "postgresql+psycopg"):
            hint = "storyline uses sqlite:/// or postgresql:// (psycopg) URLs; " + hint
        raise ConfigError(
            "storage.url", f"the database driver is not installed ({exc}); {hint}"
        ) from None
    except ArgumentError as exc:  # an unknown dialect, when the config was not checked
        raise ConfigError("storage.url", str(exc)) from None


def policy_of(settings: Settings) -> Policy:
    """The polling rules from [scheduler]: the same names in both."""
    names = {f.name for f in dataclasses.fields(Policy)}
    return Policy(**{k: v for k, v in dataclasses.asdict(settings.scheduler).items() if k in names})


def file_settings(settings: Settings, *, keep_in_place: bool = False) -> FileSettings:
    return FileSettings(
        inbox=settings.inbox_dir.resolve(),
        archive=settings.archive_dir,
        rejected=settings.rejected_dir,
        after_ingest=settings.inbox.after_ingest,
        max_file_bytes=settings.inbox.max_file_bytes,
        keep_in_place=keep_in_place,
    )


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        notifier: Notifier | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self._ticker: Ticker | None = None
        self._polled = threading.Event()
        self._projection_warned = -60.0  # monotonic time of the last such warning
        self.notifier = notifier or Notifier.from_environment()
        self.services = Services(settings, background_checkpoints=True)
        self.watcher = InboxWatcher(
            settings.inbox_dir,
            observer=settings.inbox.observer,
            stable_seconds=settings.inbox.stable_seconds,
        )
        self._stop = threading.Event()
        self._signalled: int | None = None  # a stop signal not yet logged
        self._gate = WatchdogGate.for_notifier(self.notifier)
        self._ready = False
        self._reload = False  # a plain flag: set from a signal handler, see below
        self._handled: dict[Path, float] = {}
        self._next_rescan = 0.0
        self._next_status = 0.0
        self._next_checkpoint = time.monotonic() + settings.storage.wal_checkpoint_seconds
        self._last_error: str | None = None
        self._loader: LoaderPool | None = None
        self._checkpointer: WalCheckpointer | None = None
        self.totals = BatchReport()

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        lock = self._lock()
        try:
            self.services.prepare()
            database = sqlite_path(self.services.engine)
            self._checkpointer = WalCheckpointer(database) if database else None
            metrics = None
            try:
                if self._checkpointer is not None:
                    self._checkpointer.start()
                observer = self.watcher.start()
                metrics = self._start_metrics()
                self._startup(observer)
                self._loop()
            finally:
                if self._checkpointer is not None:
                    self._checkpointer.stop()
                if metrics is not None:
                    metrics.stop()
                self.watcher.stop()
                if self._ticker is not None:
                    self._ticker.stop()
                if self._loader is not None:
                    self._loader.close()
        finally:
            self.notifier.stopping(f"stopping; {self._summary()}")
            self.services.close()
            if lock:
                lock.release()
        log.info("stopped", **self._totals())
        return 0

    def _start_metrics(self) -> MetricsServer | None:
        listen = self.settings.metrics.listen
        if not listen:
            return None
        server = MetricsServer(self.services, listen)
        log.info("serving metrics", listen=listen, port=server.port)
        return server

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def _stopping(self) -> bool:
        """True once a stop was asked for; says so in the log after a signal."""
        if not self._stop.is_set():
            return False
        signum, self._signalled = self._signalled, None
        if signum is not None:
            log.info("signal received, finishing the batch in flight", signal=signum)
        return True

    def request_reload(self, *_: object) -> None:
        self._reload = True

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            # Flags only. A handler runs between two bytecodes of the main thread, which
            # may be inside the logger holding its (non-reentrant) lock: logging here
            # deadlocked the daemon at stop. _stopping logs it instead.
            self._signalled = signum
            self._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, self.request_reload)  # an Event's set() takes a lock

    def _lock(self) -> InstanceLock | None:
        database = sqlite_path(self.services.engine)
        if database is None:
            return None
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        lock = InstanceLock(Path(database))
        lock.acquire()
        return lock

    def _startup(self, observer: str) -> None:
        log.info(
            "starting",
            database=self.settings.database_url,
            inbox=str(self.watcher.inbox),
            observer=observer,
            pid=os.getpid(),
        )
        self.services.projector.catch_up()
        self.services.registry.reconcile(self.settings.sources, utc_now())
        self._loader = self._start_loader()
        self._rescan()
        if self.settings.scheduler.enabled:
            self._ticker = Ticker(
                self._poll,
                self.settings.scheduler.tick_seconds,
                stopping=self.services.stopping,
            )
            self._ticker.start()
        self._ready = True
        self.notifier.ready(self._summary())
        log.info("ready", **self._totals())

    # -- the loop --------------------------------------------------------------------

    def _loop(self) -> None:
        gate = self._gate
        batch_size = self.settings.inbox.batch_size
        while not self._stopping():
            now = time.monotonic()
            # wake at least as often as the watchdog wants a ping
            ping = self.notifier.watchdog_interval or 0.5
            timeout = max(0.0, min(0.5, ping, self._next_rescan - now))
            paths = self.watcher.wait_for_hints(timeout, batch_size * _PIPELINE)
            if paths:
                self._ingest(paths, hinted=True)
            if time.monotonic() >= self._next_rescan or self.watcher.rescan_wanted():
                self._rescan()
            if self._polled.is_set():
                self._project_polled()
            if self._reload:
                self._do_reload()
            self._housekeeping()
            gate.beat()
            gate.maybe_ping(time.monotonic())

    def _project_polled(self) -> None:
        """Apply what a poll cycle appended and could not project itself; a busy or
        unreachable database is retried at the next turn of the loop, not fatal."""
        self._polled.clear()
        try:
            self.services.projector.catch_up()
        except SQLAlchemyError as exc:
            self._polled.set()
            now = time.monotonic()
            if now - self._projection_warned >= 60.0:
                self._projection_warned = now
                log.warning("could not apply polled events yet; retrying", error=str(exc))

    def _progress(self) -> None:
        """A batch was committed: feed the watchdog, and before READY (a large backlog
        at start) ask systemd for more time to start."""
        self._gate.beat()
        self._gate.maybe_ping(time.monotonic())
        if not self._ready:
            self.notifier.extend_timeout(_START_EXTENSION)

    def _rescan(self) -> None:
        ready = self.watcher.scan()
        step = self.settings.inbox.batch_size * _PIPELINE
        for start in range(0, len(ready), step):
            if self._stopping():
                break
            self._ingest(ready[start : start + step])
        interval = self.settings.inbox.rescan_seconds
        if self.watcher.unstable:
            interval = min(interval, self.settings.inbox.stable_seconds + 0.1)
        self._next_rescan = time.monotonic() + interval

    def _unhandled(self, paths: list[Path]) -> list[Path]:
        return [p for p in paths if p not in self._handled or os.path.lexists(p)]

    def _ingest(self, paths: list[Path], *, hinted: bool = False) -> None:
        """Ingest in batches of ``inbox.batch_size``, each committed, moved and projected
        before the next; a stop request lets only the batch in flight finish. With
        ``hinted``, hints that arrive meanwhile join the same pipeline."""
        now = time.monotonic()
        fresh = self._unhandled(paths)
        if not fresh:
            return
        started = time.perf_counter()

        def done(batch: list[Path], report: BatchReport) -> None:
            nonlocal started
            faults.hang_point("hang_after_batch")
            self._progress()
            self.services.projector.catch_up(report.events)  # no need to read them back
            for path in batch:
                self._handled[path] = now
            self._add(report)
            log.info(
                "batch ingested",
                files=report.files,
                new=report.new,
                revised=report.revised,
                unchanged=report.unchanged,
                rejected=report.rejected,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            started = time.perf_counter()

        until = time.monotonic() + _KEEP_PIPELINE_SECONDS

        def more(limit: int) -> list[Path]:  # hints that came in meanwhile, for a while
            if not hinted or time.monotonic() > until:
                return []  # back to the loop: rescans, polls, reloads, housekeeping
            return self._unhandled(self.watcher.wait_for_hints(0, limit))

        try:
            self.services.ingestor.ingest(
                fresh,
                batch_size=self.settings.inbox.batch_size,
                loader=self._loader,
                stop=self._stopping,
                each=done,
                more=more,
            )
        except Exception as exc:  # the one per-job boundary: log, record, keep running
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.exception("batch failed; files stay in the inbox for the next scan")

    def _start_loader(self) -> LoaderPool | None:
        try:
            return LoaderPool(min(_LOADERS, os.cpu_count() or 1))
        except Exception as exc:  # slower without it, never wrong
            log.warning("file loader processes unavailable; loading in the daemon", error=str(exc))
            return None

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + _STATUS_EVERY
            self.notifier.status(self._summary())
            self._handled = {p: t for p, t in self._handled.items() if now - t < _HANDLED_TTL}
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self.settings.storage.wal_checkpoint_seconds
            self._checkpoint_wal()

    def _checkpoint_wal(self) -> None:
        if self._checkpointer is None:
            return  # not SQLite
        busy = self._checkpointer.truncate()
        wal = Path(self._checkpointer.database + "-wal")
        size = wal.stat().st_size if wal.exists() else 0
        if busy and size > self.settings.storage.wal_warn_bytes:
            log.warning(
                "the write-ahead log cannot be truncated: a reader has held a "
                "transaction open for a long time",
                wal_bytes=size,
            )

    def _poll(self) -> None:
        if self.services.poller.run_cycle().unprojected:
            self._polled.set()  # the main loop applies what the cycle could not

    def _do_reload(self) -> None:
        self._reload = False
        self.notifier.reloading()
        try:
            if self.config_path is not None:
                fresh = load(self.config_path)
                self.services.registry.reconcile(fresh.sources, utc_now())
                log.info(
                    "reloaded sources from config; changes to [storage], [inbox], [http], "
                    "[scheduler] and [log] need a restart",
                    sources=len(fresh.sources),
                )
        except Exception as exc:  # a bad edit must not take the running daemon down
            self._last_error = f"reload failed: {exc}"
            log.error("reload failed; keeping the running configuration", error=str(exc))
        self.notifier.ready(self._summary())

    # -- reporting ---------------------------------------------------------------------

    def _add(self, report: BatchReport) -> None:
        self.totals.new += report.new
        self.totals.revised += report.revised
        self.totals.unchanged += report.unchanged
        self.totals.rejected += report.rejected

    def _totals(self) -> dict[str, int]:
        t = self.totals
        return {
            "new": t.new,
            "revised": t.revised,
            "unchanged": t.unchanged,
            "rejected": t.rejected,
        }

    def _summary(self) -> str:
        try:
            return summary_line(self.services, self._last_error)
        except Exception as exc:  # status must never take the daemon down
            return f"status unavailable: {exc}"
