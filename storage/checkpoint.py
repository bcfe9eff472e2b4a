"""Background WAL checkpoints for a SQLite database with one busy writer.

With SQLite's automatic checkpoints, the commit that takes the WAL past its threshold
copies the whole WAL into the database file and fsyncs it before it returns: a few
times a minute under a large ingest, one batch then takes several times as long as
its neighbours. The daemon instead turns automatic checkpoints off for its own
connections and runs this thread: a PASSIVE checkpoint every ``interval`` seconds,
on its own connection, which never takes the write lock and never waits for readers
(SQLite's recommended pattern for a busy writer). The write and fsync of the
database file then happen beside the writer, with the GIL released, in small steps.
Commits stay exactly as durable: they are synced to the WAL as before.
"""

from __future__ import annotations

import sqlite3
import threading

import structlog

log = structlog.get_logger(__name__)


class WalCheckpointer:
    def __init__(self, database: str, *, interval: float = 0.5) -> None:
        self.database = database
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = threading.Lock()  # held during each checkpoint

    def truncate(self) -> bool:
        """Checkpoint the whole WAL and truncate it, now, in the caller's thread; True if
        a reader's open transaction kept it busy. A TRUNCATE checkpoint waits for
        readers while holding the write lock, so with no busy timeout it gives up at
        once instead of stalling every writer; background runs are held off meanwhile
        (a PASSIVE one would make it busy)."""
        with self._running:
            conn = sqlite3.connect(self.database, isolation_level=None, timeout=0)
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.close()
        return bool(busy)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("no background WAL checkpoints", error=str(exc))
            return
        try:
            while not self._stop.wait(self.interval):
                try:
                    with self._running:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # logged; the next round tries again
                    log.warning("background WAL checkpoint failed", error=str(exc))
        finally:
            conn.close()


__all__ = ["WalCheckpointer"]
