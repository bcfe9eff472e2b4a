"""Polling: which sources are due, checking them, and recording every check.

APScheduler is only the ticker (``Ticker``): an in-memory ``dispatch`` job every few
seconds, ``max_instances=1``, ``coalesce=True``. What is due lives in our own
``source_state`` table, claimed with a lease (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so it survives restarts, is visible in SQL, and several daemons on one
PostgreSQL never check the same source at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import OperationalError

from adapters.errors import UnusableInput
from adapters.feed import FeedParserPool
from adapters.http import FetchError, Gone, HttpClient, TransientFetchError
from daemon import policy as rules
from daemon.handlers import HANDLERS, Found, Tools
from daemon.ingest import identify_all
from daemon.recorder import Pending, record
from storage.blobs import Blob
from storage.db import IMMEDIATE, insert_many, update_many
from storage.errors import ConcurrencyError, StoreError, StoreUnavailable
from storage.events import ArticleTrackingStopped, to_iso
from storage.schema import fetch_log, source_config, source_state
from storage.store import EventStore, NewEvent, StoredEvent

log = structlog.get_logger(__name__)

_RETIRED = timedelta(days=3650)
_ACTIVE = ("active", "backing-off")
_WRITE_BATCH = 2000  # observations per append: one commit for many sources
_DAEMON_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# only the poller writes these: one a check left unchanged is not written again
_KEPT_UNLESS_CHANGED = frozenset({"etag", "last_modified", "body_sha256", "cursor"})
# what a check reads of its source's state (the rest is only ever written)
_CLAIMED = (
    "source_id", "status", "last_check_at", "last_change_at", "consecutive_failures",
    "interval_seconds", "etag", "last_modified", "body_sha256", "cursor",
)  # fmt: skip


@dataclass(slots=True)
class Check:
    """What one check of one source found."""

    source: dict[str, Any]
    outcome: str = "failed"  # new | revised | unchanged | not-modified | failed
    status: int | None = None
    size: int = 0
    duration: float = 0.0
    new: int = 0
    revised: int = 0
    error: str | None = None
    network_error: bool = False
    gone: bool = False
    retry_after: float | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None
    interval: float | None = None
    cursor: dict[str, Any] | None = None
    skipped: bool = False
    found: Found | None = None
    blob: Blob | None = None
    pending: list[Pending] = field(default_factory=list)


@dataclass(slots=True)
class CycleReport:
    checked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    network_down: bool = False
    events: int = 0
    # something the cycle appended is not in the projections yet (no projector given,
    # or it failed): the daemon's main loop catches up
    unprojected: bool = False


class _Collector:
    """Checks finished by the worker threads, handed to the writer in batches of about
    ``_WRITE_BATCH`` observations (or what is left once every check has run)."""

    def __init__(self, total: int) -> None:
        self.checks: list[Check] = []
        self._left = total
        self._batch: list[Check] = []
        self._pending = 0
        self._error: BaseException | None = None
        self._ready = threading.Condition()

    def run(self, check: Callable[[dict[str, Any]], Check], source: dict[str, Any]) -> None:
        result: Check | None = None
        try:
            result = check(source)
        except BaseException as exc:  # Poller._check records every Exception itself;
            with self._ready:  # anything else is raised in the writer, by next_batch
                self._error = exc
        finally:
            with self._ready:
                self._left -= 1
                if result is not None:
                    self.checks.append(result)
                    if result.pending:
                        self._batch.append(result)
                        self._pending += len(result.pending)
                    else:  # nothing to append: what it found is not needed any more
                        result.found, result.blob = None, None
                if self._pending >= _WRITE_BATCH or self._left == 0:
                    self._ready.notify()

    def next_batch(self) -> tuple[list[Check], bool]:
        """Wait for a full batch or the end; return it and whether every check ran."""
        with self._ready:
            while self._pending < _WRITE_BATCH and self._left > 0:
                self._ready.wait()
            if self._error is not None:
                raise self._error
            batch, self._batch, self._pending = self._batch, [], 0
            return batch, self._left == 0


class Poller:
    def __init__(
        self,
        engine: Engine,
        store: EventStore,
        http: HttpClient,
        parser: FeedParserPool,
        *,
        policy: rules.Policy,
        clock: Callable[[], datetime],
        workers: int = 8,
        lease_seconds: float = 300.0,
        follow: Callable[[str, list[str], datetime], None] | None = None,
        stopping: threading.Event | None = None,
        project: Callable[[Sequence[StoredEvent]], int] | None = None,
    ) -> None:
        self.engine, self.store, self.http, self.parser = engine, store, http, parser
        self.policy, self.clock, self.workers = policy, clock, workers
        self.lease = timedelta(seconds=lease_seconds)
        self.tools = Tools(http=http, parser=parser, clock=clock)
        self.follow = follow  # feeds with follow_links: new entries' pages become sources
        # set on shutdown: checks not started are skipped
        self.stopping = stopping or threading.Event()
        self.owner = f"{os.uname().nodename}:{os.getpid()}"
        # applies events just appended (the daemon's projector): articles show up batch
        # by batch during a long cycle, and the CPU work overlaps the fetching
        self.project = project

    def run_cycle(self, *, all_sources: bool = False) -> CycleReport:
        """Check every due source (or all) and record each check.

        Worker threads fetch and extract (no database); this thread is the one writer:
        it appends what they found in batches, then records every check of the cycle
        in one transaction.
        """
        now = self.clock()
        try:
            due = self._claim(now, all_sources)
        except OperationalError as exc:
            raise StoreUnavailable(f"could not claim due sources: {exc.orig}") from exc
        report = CycleReport(checked=len(due))
        if not due:
            return report
        checks, projected = self._check_all(due)
        ran = [c for c in checks if not c.skipped]
        report.network_down = len(ran) > 1 and all(c.network_error for c in ran)
        if report.network_down:
            log.error(
                "every source failed to connect: our network looks down; "
                "not counted against the sources",
                sources=len(checks),
            )
        if self._record(checks, self.clock(), report.network_down):
            projected = self._project(()) and projected  # status events, read from the log
        report.unprojected = not projected
        for check in ran:
            report.outcomes[check.outcome] += 1
            report.events += check.new + check.revised
        log.info("poll cycle", checked=report.checked, **dict(report.outcomes))
        return report

    def _check_all(self, due: list[dict[str, Any]]) -> tuple[list[Check], bool]:
        """Run every check on the worker threads; append what they found in batches.
        Returns the checks, and whether everything appended was projected.

        This thread is woken only when a batch is full or every check is done, not at
        each check's end (one GIL hand-off and wake-up per check saved)."""
        done = _Collector(len(due))
        projected = True
        queue = deque(due)

        def work() -> None:  # each worker takes the next source until none is left
            # the daemon's signals go to its main thread: a signal that interrupts a
            # receive here would restart the kernel's receive timeout (adapters/http1.py)
            signal.pthread_sigmask(signal.SIG_BLOCK, _DAEMON_SIGNALS)
            while True:
                try:
                    source = queue.popleft()  # atomic: no lock, no future per source
                except IndexError:
                    return
                done.run(self._check, source)

        threads = [
            threading.Thread(target=work, name=f"poll-{n}", daemon=True)
            for n in range(min(self.workers, len(due)))
        ]
        for thread in threads:
            thread.start()
        try:
            while True:
                batch, finished = done.next_batch()
                projected = self._store(batch) and projected
                if finished:
                    break
        finally:
            queue.clear()  # on an error here, the workers stop after their current check
            for thread in threads:
                thread.join()
        return done.checks, projected

    # -- claiming --------------------------------------------------------------------

    def _claim(self, now: datetime, all_sources: bool) -> list[dict[str, Any]]:
        s, c = source_state, source_config
        query = (
            select(*(s.c[k] for k in _CLAIMED), c.c.kind, c.c.url, c.c.name, c.c.settings)
            .join(c, c.c.source_id == s.c.source_id)
            .where(c.c.removed == 0, s.c.status.in_(_ACTIVE))
            .where(or_(s.c.lease_until.is_(None), s.c.lease_until < now))
            .order_by(s.c.next_check_at)
        )
        if not all_sources:
            query = query.where(s.c.next_check_at <= now)
        with self.engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=s, skip_locked=True)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if rows:
                conn.execute(
                    update(s)
                    .where(s.c.source_id.in_([r["source_id"] for r in rows]))
                    .values(lease_owner=self.owner, lease_until=now + self.lease)
                )
        return rows

    # -- checking --------------------------------------------------------------------

    def _check(self, source: dict[str, Any]) -> Check:
        check = Check(source=source)
        if self.stopping.is_set():
            check.skipped = True  # the daemon is stopping: not started, lease released
            return check
        started = time.monotonic()
        try:
            self._fetch(check)
        except Gone as exc:
            check.gone, check.status, check.error = True, exc.status, str(exc)
        except TransientFetchError as exc:
            check.status, check.error, check.retry_after = exc.status, str(exc), exc.retry_after
            check.network_error = exc.status is None
        except UnusableInput as exc:
            check.error = f"{exc.reason}: {exc}"
        except (FetchError, StoreError) as exc:
            check.status = getattr(exc, "status", check.status)
            check.error = str(exc)
        except Exception as exc:  # the per-job boundary: record it, keep polling
            log.exception("check failed unexpectedly", source_id=source["source_id"])
            check.error = f"{type(exc).__name__}: {exc}"
        if check.error:
            check.outcome = "failed"
        check.duration = time.monotonic() - started
        return check

    def _fetch(self, check: Check) -> None:
        """Fetch and extract, and prepare what to record (CPU work off the writer)."""
        source = check.source
        found = HANDLERS[source["kind"]](self.tools, check, self._policy(source))
        if found is None:
            return
        sid = source["source_id"]
        check.found, check.blob = found, Blob.of(found.raw, check.body_sha256)
        meta = {"source_id": sid, "adapter": found.adapter, "raw_sha256": check.blob.sha256}
        check.pending = [
            Pending(
                item,
                sid,
                {**meta, "guid": item.observation.guid} if item.observation.guid else meta,
                source["last_check_at"],
            )
            for item in identify_all(found.observations, found.identities)
        ]
        check.outcome = "unchanged"

    def _store(self, batch: list[Check]) -> bool:
        """Append the versions of several checks in one transaction (all or none) and
        project them; False if they could not be projected. Then let go of what the
        checks found: a cycle keeps every check until it ends, and 1,000 feeds' texts
        and raw bodies held to the end were about 40 MB."""
        try:
            return self._append(batch)
        finally:
            for check in batch:
                check.found, check.blob, check.pending = None, None, []

    def _append(self, batch: list[Check]) -> bool:
        if not batch:
            return True
        now = self.clock()
        pending = [p for c in batch for p in c.pending]
        try:
            result, appended = record(
                self.store, pending, now, blobs=[c.blob for c in batch if c.blob]
            )
        except StoreError as exc:
            for check in batch:
                check.outcome, check.error = "failed", str(exc)
            return True  # nothing appended
        projected = appended is None or self._project(appended.events)
        start = 0
        for check in batch:
            outcomes = result.outcomes[start : start + len(check.pending)]
            start += len(check.pending)
            check.new, check.revised = outcomes.count("new"), outcomes.count("revised")
            check.outcome = "new" if check.new else "revised" if check.revised else "unchanged"
            assert check.found is not None
            check.cursor = check.found.cursor
            self._follow(check, outcomes, now)
        return projected

    def _project(self, events: Sequence[StoredEvent]) -> bool:
        """Apply what was just appended (``events``, else read from the log); False if
        there is no projector or it failed (the events are in the log all the same)."""
        if self.project is None:
            return False
        try:
            self.project(events)
        except Exception:
            log.warning("could not project what this cycle appended yet", exc_info=True)
            return False
        return True

    def _follow(self, check: Check, outcomes: list[str], now: datetime) -> None:
        source = check.source
        if not (source.get("settings") or {}).get("follow_links") or self.follow is None:
            return
        assert check.found is not None
        links = [
            o.url
            for o, outcome in zip(check.found.observations, outcomes, strict=True)
            if outcome == "new" and o.url
        ]
        if links:
            self.follow(source["source_id"], links, now)

    def _policy(self, source: dict[str, Any]) -> rules.Policy:
        settings = source.get("settings") or {}
        overrides = {
            k: float(settings[k]) for k in ("min_interval", "max_interval") if k in settings
        }
        return replace(self.policy, **overrides) if overrides else self.policy

    # -- recording -------------------------------------------------------------------

    def _record(self, checks: list[Check], now: datetime, network_down: bool) -> bool:
        """Every check of the cycle: its fetch_log row and the source's next state, in
        one transaction, with each statement built once. True if a source stopped
        tracking (an event was appended for its article)."""
        skipped = [c.source["source_id"] for c in checks if c.skipped]
        checks = [c for c in checks if not c.skipped]
        states = [(c, self._next_state(c, now, network_down)) for c in checks]
        logs = [self._log_row(c, now) for c in checks]
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for check, state in states:
            source = check.source
            values = {
                "source_id": source["source_id"],
                "lease_owner": None,
                "lease_until": None,
                "last_check_at": now,
                "last_status": check.status,
            }
            for name, value in state.items():
                # a validator, body hash or cursor the check left as it was is not
                # written again; the rest always is (`sources resume` may have changed
                # the status meanwhile: this check's outcome decides, as before)
                if name not in _KEPT_UNLESS_CHANGED or source[name] != value:
                    values[name] = value
            groups.setdefault(tuple(values), []).append(values)
        with self.engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
            if skipped:
                conn.execute(
                    update(source_state)
                    .where(source_state.c.source_id.in_(skipped))
                    .values(lease_owner=None, lease_until=None)
                )
            if logs:
                insert_many(conn, fetch_log, logs)
            for rows in groups.values():
                update_many(conn, source_state, "source_id", rows)
        stopped = [c for c, state in states if state.get("status") == "tracking-stopped"]
        for check in stopped:
            self._stop_tracking(check, now)
        return bool(stopped)

    @staticmethod
    def _log_row(check: Check, now: datetime) -> dict[str, Any]:
        source = check.source
        return {
            "source_id": source["source_id"],
            "url": source["url"],
            "checked_at": now,
            "http_status": check.status,
            "bytes": check.size,
            "duration_ms": int(check.duration * 1000),
            "outcome": check.outcome,
            "new": check.new,
            "revised": check.revised,
            "error": check.error,
        }

    def _next_state(self, check: Check, now: datetime, network_down: bool) -> dict[str, Any]:
        source = check.source
        if check.outcome != "failed":
            return self._success_state(check, now)
        if check.gone:
            return {"status": "gone", "last_error": check.error, "next_check_at": now + _RETIRED}
        failures = source["consecutive_failures"] + (0 if network_down else 1)
        delay = rules.backoff(self.policy, max(failures, 1), check.retry_after)
        return {
            "status": "backing-off" if failures else source["status"],
            "consecutive_failures": failures,
            "last_error": check.error,
            "next_check_at": now + timedelta(seconds=delay),
        }

    def _success_state(self, check: Check, now: datetime) -> dict[str, Any]:
        source, policy = check.source, self._policy(check.source)
        changed = check.outcome in ("new", "revised")
        last_change = now if changed else (source["last_change_at"] or now)
        if source["kind"] == "feed":
            interval = check.interval or source["interval_seconds"] or policy.min_interval
        else:
            interval = rules.page_interval(policy, source["interval_seconds"] or None, changed)
        stopped = source["kind"] != "feed" and rules.tracking_stopped(policy, last_change, now)
        return {
            "status": "tracking-stopped" if stopped else "active",
            "consecutive_failures": 0,
            "last_error": None,
            "last_success_at": now,
            "last_change_at": last_change,
            "interval_seconds": interval,
            "next_check_at": now + timedelta(seconds=interval),
            "etag": check.etag,
            "last_modified": check.last_modified,
            "body_sha256": check.body_sha256 or source["body_sha256"],
            "cursor": check.cursor if check.cursor is not None else source["cursor"],
        }

    def _stop_tracking(self, check: Check, now: datetime) -> None:
        cursor = check.cursor or check.source["cursor"] or {}
        if "article_id" not in cursor:
            return
        sid = check.source["source_id"]
        log.info("tracking stopped: no change for the quiet period", source_id=sid)
        event = ArticleTrackingStopped(
            article_id=cursor["article_id"], source_id=sid, observed_at=now
        )
        append_article_event(self.store, event, f"tracking-stopped|{sid}|{to_iso(now)}")


def append_article_event(store: EventStore, event: Any, key: str) -> None:
    """Append a status event to an article's stream, at its next version."""
    for _ in range(5):
        stream = store.read_streams([event.article_id]).get(event.article_id, [])
        if not stream:
            return
        try:
            store.append(
                [
                    NewEvent(
                        stream_id=event.article_id,
                        stream_version=stream[-1].stream_version + 1,
                        idempotency_key=key,
                        event=event,
                        metadata={"source_id": event.source_id},
                    )
                ]
            )
            return
        except ConcurrencyError:
            continue


class Ticker:
    """APScheduler as an in-process ticker that calls ``dispatch`` every few seconds."""

    def __init__(
        self,
        dispatch: Callable[[], object],
        tick_seconds: float,
        stopping: threading.Event | None = None,
    ) -> None:
        self.dispatch = dispatch
        self.stopping = stopping
        self.tick_seconds = tick_seconds
        self._scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        scheduler = BackgroundScheduler(
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(self.tick_seconds * 2)),
            },
            timezone="UTC",
        )
        scheduler.add_job(
            self._safe_dispatch,
            "interval",
            seconds=self.tick_seconds,
            id="dispatch",
            next_run_time=datetime.now().astimezone(),
        )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop ticking; a cycle in flight finishes the checks already started (each
        bounded by the HTTP deadline) and skips the rest."""
        if self.stopping is not None:
            self.stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def _safe_dispatch(self) -> None:
        try:
            self.dispatch()
        except StoreUnavailable as exc:  # busy database: the next tick tries again
            log.warning("poll cycle skipped", error=str(exc))
        except Exception as exc:  # the per-job boundary: log it, keep ticking
            log.exception("poll cycle failed", error=str(exc))
