"""Worker processes that load inbox files (read, hash, parse, identify, compress) and
move committed ones out of the inbox, so the daemon's one writer thread only writes.

Started with the forkserver context (the daemon runs threads, so never fork). Each
worker answers its jobs in order; a worker that dies is replaced and its share is done
in the daemon instead.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from daemon.files import Disposal, FileSettings, Loaded, Refused, dispose_all, load_file

log = structlog.get_logger(__name__)
_GONE = object()  # the worker's pipe closed
_STARTUP_TIMEOUT = 30.0  # seconds for a new worker to say it is ready


class LoaderPool:
    """Long-lived worker processes running :func:`load_file` (read, hash, parse,
    identify, compress: the CPU-bound part of an ingest) and :func:`dispose_all` (moving
    committed files to the archive) so that both run beside the daemon's database work.
    Owned by the daemon, used from its main thread only.

    A job is split evenly over the workers; its answer is read when the caller asks
    for it, so the caller can record one batch while the next one loads. Each worker
    runs its jobs in the order they were sent. A worker that dies or fails is replaced
    and its share is done in the daemon instead (loading has no side effects and moving
    is safe to repeat). Workers exit when their pipe closes, so a killed daemon leaves
    none behind.
    """

    def __init__(self, workers: int, *, context: str = "forkserver") -> None:
        self._ctx = multiprocessing.get_context(context)  # never "fork": the daemon has threads
        if context == "forkserver":
            self._ctx.set_forkserver_preload(["daemon.files"])  # only before it first starts
        self._workers = [_LoadWorker(self._ctx) for _ in range(max(1, workers))]
        for worker in self._workers:
            worker.wait_ready()

    def submit(
        self, settings: FileSettings, paths: Sequence[Path]
    ) -> Callable[[], list[Loaded | Refused]]:
        """Start loading ``paths``; the returned function waits for the results (in order)."""
        return self._spread(list(paths), lambda piece: ("load", settings, piece),
                            lambda piece: [load_file(settings, p) for p in piece])  # fmt: skip

    def submit_moves(self, moves: Sequence[Disposal]) -> Callable[[], list[str]]:
        """Start archiving committed files; the returned function waits until every one
        is done and returns the names of those that had vanished."""
        return self._spread(list(moves), lambda piece: ("move", piece), dispose_all)

    def _spread(
        self, items: list[Any], job: Callable[[list[Any]], tuple[Any, ...]],
        local: Callable[[list[Any]], list[Any]],
    ) -> Callable[[], list[Any]]:  # fmt: skip
        share = -(-len(items) // max(1, len(self._workers)))
        sent: list[tuple[_LoadWorker | None, int, list[Any]]] = []
        for i, worker in enumerate(self._workers):
            piece = items[i * share : (i + 1) * share]
            if piece:
                ticket = worker.send(job(piece))
                sent.append((worker if ticket is not None else None, ticket or 0, piece))
        rest = items[len(self._workers) * share :]  # only when there are no workers
        if rest:
            sent.append((None, 0, rest))

        def result() -> list[Any]:
            done: list[Any] = []
            for worker, ticket, piece in sent:
                answer = worker.receive(ticket) if worker is not None else None
                if answer is None:
                    if worker is not None:
                        self._replace(worker)
                    answer = local(piece)
                done.extend(answer)
            return done

        return result

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def _replace(self, worker: _LoadWorker) -> None:
        """A worker died or failed: start another (or go on with one worker fewer)."""
        if worker not in self._workers:
            return  # already replaced: a later job of the same worker
        self._workers.remove(worker)
        worker.kill()
        try:
            fresh = _LoadWorker(self._ctx)
            fresh.wait_ready()
        except Exception as exc:  # loading in the daemon is slower, never wrong
            log.warning("cannot start a file loader worker", error=str(exc))
            return
        self._workers.append(fresh)


class _LoadWorker:
    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_loader_main, args=(child,), name="storyline-loader", daemon=True
        )
        self.process.start()
        child.close()
        self._tickets = itertools.count(1)
        self._answers: queue.SimpleQueue[Any] = queue.SimpleQueue()  # in job order
        self._next_answer = 1  # the ticket of the next answer to come off the pipe
        self._early: dict[int, Any] = {}
        self._dead = False
        self._gone = False  # the worker's end of the pipe closed
        self._reader: threading.Thread | None = None

    def wait_ready(self) -> None:
        if not self.conn.poll(_STARTUP_TIMEOUT):
            self.kill()
            raise OSError(f"file loader worker did not start in {_STARTUP_TIMEOUT:g} s")
        self.conn.recv()
        # Answers are drained as they come: a worker blocked sending a large answer must
        # never wait on a daemon blocked sending it the next job (a deadlock otherwise).
        self._reader = threading.Thread(target=self._read, name="loader-answers", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                answer = self.conn.recv()
            except (EOFError, OSError, ValueError):
                self._answers.put(_GONE)
                return
            self._answers.put(answer)

    def send(self, job: tuple[Any, ...]) -> int | None:
        """Queue a job; returns its ticket, or None if the worker is gone."""
        if self._dead:
            return None
        try:
            self.conn.send(job)
        except (OSError, ValueError):
            return None
        return next(self._tickets)

    def receive(self, ticket: int) -> list[Any] | None:
        """The answer to job ``ticket`` (answers come in the order jobs were sent; an
        answer asked for early is kept until asked for), or None if the worker died or
        failed."""
        while ticket not in self._early and not self._gone and self._next_answer <= ticket:
            answer = self._answers.get()
            if answer is _GONE:
                self._gone = True
                break
            self._early[self._next_answer] = answer
            self._next_answer += 1
        answer = self._early.pop(ticket, None)
        return answer if isinstance(answer, list) else None

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(2.0)
        self.kill()

    def kill(self) -> None:
        if self._dead:
            return
        self._dead = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()
        self.process.close()


def _loader_main(conn: Any) -> None:
    """Loop of one worker: a job is ("load", settings, paths) or ("move", disposals);
    None means stop. Jobs are answered in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when workers stop
    conn.send(("ready",))
    with contextlib.suppress(EOFError, OSError):  # the daemon went away: nothing left to do
        while (job := conn.recv()) is not None:
            try:
                if job[0] == "move":
                    answer: Any = dispose_all(job[1])
                else:
                    _, settings, paths = job
                    answer = [load_file(settings, p) for p in paths]
            except Exception as exc:  # per-job boundary: the daemon does this share itself
                answer = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(answer)
