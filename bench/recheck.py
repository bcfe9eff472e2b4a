"""Re-check benchmark: tracked article pages re-polled by storyline vs a naive loop.

usage: python bench/recheck.py [--pages N] [--workers 8] [--repeat 3] [--naive-pages M]

1. Server: bench/pageserver.py in its own process (threaded, HTTP/1.1 keep-alive,
   127.0.0.1 only, so it does not share our GIL): N distinct article pages of ~36-55 KB
   (head meta, a big inline config script, JSON-LD, cookie banner, nav, ads, 10-22
   paragraphs, related links, most viewed, footer). Its CPU time is reported per phase
   and is not in the figures.
2. Storyline, in this process: a fresh SQLite database in a temporary folder, N
   ``page`` sources added with ``Registry.add``, then, each timed as one
   ``services.poller.run_cycle(all_sources=True)``:
     initial     every page fetched, extracted and imported (article.discovered)
     unchanged A the server sends ETags and answers 304 to If-None-Match
     unchanged B no validators, the same bytes again: the body-hash shortcut
                 (A and B run alternately, --repeat times each, 3 by default: one
                 cycle takes half a second, and the median of each is reported)
     changed     10 % of the pages (every 10th) have one paragraph rewritten and a new
                 ETag; the other 90 % answer 304. Exactly that many article.revised
                 events must have been appended (counted in the events table).
   Settings: http.allow_private_networks, per_host_min_delay 0, per_host_concurrency
   32 (every page is on one host here), scheduler.workers 8 (the daemon's default;
   --workers), the rest default (SQLite synchronous=FULL).
3. Naive baseline, in this process too: every page fetched with one httpx.Client, one
   after the other (like diffengine), and ``trafilatura.extract`` run on it every time.

CPU is ``time.process_time()`` of this process (all its threads) plus the
``RUSAGE_CHILDREN`` time of children that ended during the phase; the page server
runs in a child that ends only after the run, so it is excluded. The target: an
unchanged re-check costs at most 1/20 of a naive fetch-and-extract, per page, in
wall time (at the configured concurrency) and in CPU time.

Every wait has a deadline; the temporary folder is removed and the server stopped,
even on error. Exit status: 0 targets met and every check consistent, 1 otherwise,
2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import BenchError, child_server
from common import control as server_control

REPO = Path(__file__).resolve().parents[1]
PAGESERVER = Path(__file__).resolve().parent / "pageserver.py"

SERVER_READY_DEADLINE = 120.0
SERVER_STOP_DEADLINE = 5.0
CONTROL_TIMEOUT = 10.0
NAIVE_FETCH_TIMEOUT = 20.0
CHANGED_EVERY = 10  # every 10th page is revised in the "changed" cycle: 10 %
TARGET_RATIO = 20.0


# -- the page server ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerInfo:
    base: str
    smallest: int
    largest: int
    total: int


@contextmanager
def page_server(pages: int) -> Iterator[ServerInfo]:
    """bench/pageserver.py as a child process; always stopped, even on error."""
    command = [sys.executable, str(PAGESERVER), "--pages", str(pages)]
    with child_server(command, name="page server", ready_seconds=SERVER_READY_DEADLINE,
                      stop_seconds=SERVER_STOP_DEADLINE) as fields:  # fmt: skip
        port, smallest, largest, total = (int(x) for x in fields[:4])
        yield ServerInfo(f"http://127.0.0.1:{port}", smallest, largest, total)


def control(base: str, path: str) -> dict[str, Any]:
    return server_control(base, path, CONTROL_TIMEOUT)


def page_url(base: str, number: int) -> str:
    return f"{base}/article/{number:04d}.html"


# -- measuring --------------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    pages: int
    seconds: float = 0.0
    cpu: float = 0.0  # seconds, this process + children that ended during the phase
    outcomes: dict[str, int] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    errors: list[str] = field(default_factory=list)  # failed checks: URL, status, error

    @property
    def per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def wall_ms(self) -> float:
        return 1000 * self.seconds / self.pages

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.pages


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(phase: Phase, base: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` and fill ``phase`` with its wall and CPU time and the server's stats."""
    control(base, "/_reset")
    cpu0, children0 = time.process_time(), _children_cpu()
    started = time.perf_counter()
    result = work()
    phase.seconds = time.perf_counter() - started
    phase.cpu = time.process_time() - cpu0 + _children_cpu() - children0
    phase.server = control(base, "/_stats")
    return result


def median_phase(runs: list[Phase]) -> Phase:
    """One phase with the median wall and the median CPU time of ``runs`` (each taken
    on its own; the lower of the two middle ones for an even count), the first run's
    outcomes and the server figures of the run whose wall time is reported."""
    middle = sorted(runs, key=lambda p: p.seconds)[(len(runs) - 1) // 2]
    return Phase(
        pages=runs[0].pages,
        seconds=middle.seconds,
        cpu=statistics.median_low(p.cpu for p in runs),
        outcomes=runs[0].outcomes,
        server=middle.server,
        errors=[e for p in runs for e in p.errors],
    )


# -- storyline ----------------------------------------------------------------------------


def storyline(args: argparse.Namespace, base: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="storyline-bench-recheck-"))
    try:
        return _storyline_phases(args, base, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _storyline_phases(args: argparse.Namespace, base: str, tmp: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    import adapters.page  # noqa: F401  (trafilatura: imported once, outside the timings)
    from daemon.config import SourceEntry, from_mapping
    from daemon.service import Services, tune_gc, utc_now
    from storage.schema import events, fetch_log

    raw = {
        "http": {"allow_private_networks": True, "per_host_min_delay": 0.0,
                 "per_host_concurrency": 32},
        "scheduler": {"workers": args.workers},
    }  # fmt: skip
    services = Services(from_mapping(raw, base_dir=tmp))
    tune_gc()  # as the storyline command does
    n = args.pages
    out: dict[str, Any] = {}

    def count(event_type: str, after: int) -> int:
        query = select(func.count()).where(events.c.event_type == event_type,
                                           events.c.position > after)  # fmt: skip
        with services.engine.connect() as conn:
            return int(conn.execute(query.select_from(events)).scalar_one())

    def head() -> int:
        with services.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0)))
                       .scalar_one())  # fmt: skip

    def last_check() -> int:
        with services.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(fetch_log.c.id), 0)))
                       .scalar_one())  # fmt: skip

    def cycle(phase: Phase) -> Phase:
        mark = last_check()
        report = timed(phase, base, lambda: services.poller.run_cycle(all_sources=True))
        phase.outcomes = dict(report.outcomes)
        query = (select(fetch_log.c.url, fetch_log.c.http_status, fetch_log.c.error)
                 .where(fetch_log.c.id > mark, fetch_log.c.outcome == "failed"))  # fmt: skip
        with services.engine.connect() as conn:
            failed = conn.execute(query).all()
        phase.errors = [f"{url} ({status}): {error}" for url, status, error in failed]
        if report.checked != n:
            raise BenchError(f"a cycle checked {report.checked} sources, not {n}")
        return phase

    try:
        services.prepare()
        started = time.perf_counter()
        now = utc_now()
        for number in range(n):
            entry = SourceEntry(kind="page", url=page_url(base, number), name=f"page {number}")
            services.registry.add(entry, origin="cli", now=now)
        out["setup_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        services.poller  # noqa: B018  (HTTP client and feed-parser processes, made once)
        out["poller_seconds"] = time.perf_counter() - started
        control(base, "/_mode/etag")
        control(base, "/_revise/0")

        mark = head()
        out["initial"] = cycle(Phase(n))
        out["initial_discovered"] = count("article.discovered", mark)
        started = time.perf_counter()
        out["catch_up_events"] = services.projector.catch_up()
        out["catch_up_seconds"] = time.perf_counter() - started

        # A and B alternately, ``repeat`` times each: one cycle is half a second, short
        # enough for a hiccup of this shared machine to move it; the median is reported
        runs_a: list[Phase] = []
        runs_b: list[Phase] = []
        for _ in range(args.repeat):
            control(base, "/_mode/etag")
            runs_a.append(cycle(Phase(n)))
            control(base, "/_mode/plain")
            runs_b.append(cycle(Phase(n)))
        out["unchanged_a_runs"], out["unchanged_b_runs"] = runs_a, runs_b
        out["unchanged_a"], out["unchanged_b"] = median_phase(runs_a), median_phase(runs_b)

        control(base, "/_mode/etag")
        out["expected_revised"] = control(base, f"/_revise/{CHANGED_EVERY}")["revised"]
        mark = head()
        out["changed"] = cycle(Phase(n))
        out["changed_revised_events"] = count("article.revised", mark)
        out["changed_events"] = head() - mark
        out["events"] = head()
    finally:
        services.close()
    return out


# -- the naive loop -------------------------------------------------------------------------


def naive(args: argparse.Namespace, base: str) -> Phase:
    import httpx
    import trafilatura

    count = min(args.naive_pages or args.pages, args.pages)
    phase = Phase(count)
    control(base, "/_mode/plain")  # it sends no validators anyway; every answer is a 200
    control(base, "/_revise/0")
    trafilatura.extract("<html><body><p>warm up</p></body></html>")  # lazy imports, once
    chars = empty = 0

    def loop() -> None:
        nonlocal chars, empty
        with httpx.Client(timeout=NAIVE_FETCH_TIMEOUT, trust_env=False) as client:
            for number in range(count):
                response = client.get(page_url(base, number))
                response.raise_for_status()
                text = trafilatura.extract(response.text, url=str(response.url))
                chars += len(text or "")
                empty += not text

    timed(phase, base, loop)
    phase.outcomes = {"extracted": count - empty, "empty": empty}
    phase.note = f"{chars / max(count - empty, 1):.0f} chars of text per page"
    return phase


# -- report ---------------------------------------------------------------------------------


def report(args: argparse.Namespace, server: ServerInfo, story: dict[str, Any],
           plain: Phase) -> bool:  # fmt: skip
    n = args.pages
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.platform()}")  # fmt: skip
    print(f"pages: {n} distinct article pages on 127.0.0.1, {server.smallest / 1024:.0f}-"
          f"{server.largest / 1024:.0f} KB (mean {server.total / n / 1024:.1f} KB), "
          "threaded HTTP/1.1 server in its own process")  # fmt: skip
    print(f"storyline: workers={args.workers}, per_host_concurrency=32, per_host_min_delay=0, "
          "SQLite synchronous=FULL (default)")  # fmt: skip
    print(f"setup (not timed): {n} sources added in {story['setup_seconds']:.1f} s; "
          f"poller made in {story['poller_seconds']:.2f} s; projector catch-up after the "
          f"initial cycle {story['catch_up_seconds']:.2f} s ({story['catch_up_events']} "
          "events)")  # fmt: skip
    print()
    median = f" (median of {args.repeat})" if args.repeat > 1 else ""
    rows = [
        ("initial import (fetch + extract + append)", story["initial"]),
        ("unchanged A: 304 to If-None-Match" + median, story["unchanged_a"]),
        ("unchanged B: same bytes, body hash" + median, story["unchanged_b"]),
        (f"changed: {story['expected_revised']} revised, rest 304", story["changed"]),
        ("naive: httpx GET + trafilatura.extract", plain),
    ]
    print(f"{'cycle':50} {'pages':>5} {'seconds':>8} {'pages/s':>8} {'wall ms/p':>9} "
          f"{'CPU ms/p':>8}  {'server CPU s, conns':>19}  outcomes")  # fmt: skip
    for label, p in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(p.outcomes.items()))
        print(f"{label:50} {p.pages:5d} {p.seconds:8.2f} {p.per_s:8.0f} {p.wall_ms:9.3f} "
              f"{p.cpu_ms:8.3f}  {p.server.get('cpu_seconds', 0):12.2f} "
              f"{p.server.get('connections', 0):6d}  {outcomes}")  # fmt: skip
    for label, p in rows:
        for error in p.errors[:5]:
            print(f"failed check in {label.split(':')[0].split(' (')[0]}: {error}")
        if len(p.errors) > 5:
            print(f"... and {len(p.errors) - 5} more failed checks")
    for key, label in (("unchanged_a_runs", "A"), ("unchanged_b_runs", "B")):
        if len(story[key]) > 1:
            walls = " ".join(f"{p.wall_ms:.3f}" for p in story[key])
            cpus = " ".join(f"{p.cpu_ms:.3f}" for p in story[key])
            print(f"unchanged {label}, every run in order: wall ms/p {walls}; CPU ms/p {cpus}")
    if plain.pages < n:
        print(f"(naive loop measured on the first {plain.pages} pages)")
    print(f"naive: {plain.note}")
    print()
    print(f"{'per unchanged page vs naive':50} {'wall ms':>8} {'ratio':>7} {'CPU ms':>8} "
          f"{'ratio':>7}")  # fmt: skip
    checks: list[tuple[str, bool]] = []
    for key, label in (("unchanged_a", "A (304)"), ("unchanged_b", "B (body hash)")):
        p = story[key]
        wall_ratio, cpu_ratio = plain.wall_ms / p.wall_ms, plain.cpu_ms / p.cpu_ms
        print(f"{'storyline ' + label:50} {p.wall_ms:8.3f} {wall_ratio:6.1f}x {p.cpu_ms:8.3f} "
              f"{cpu_ratio:6.1f}x")  # fmt: skip
        met = min(wall_ratio, cpu_ratio) >= TARGET_RATIO
        checks.append((f"unchanged {label}: wall {wall_ratio:.1f}x, CPU {cpu_ratio:.1f}x "
                       "cheaper than naive", met))  # fmt: skip
    print(f"{'naive fetch + extract':50} {plain.wall_ms:8.3f} {'':>7} {plain.cpu_ms:8.3f}")
    print()
    revised, expected = story["changed_revised_events"], story["expected_revised"]
    failed = story["initial"].outcomes.get("failed", 0)
    consistent = [
        (f"initial: {story['initial'].outcomes} and {story['initial_discovered']} "
         "article.discovered", story["initial"].outcomes == {"new": n}
         and story["initial_discovered"] == n),
        (f"unchanged A: {[p.outcomes for p in story['unchanged_a_runs']]} (a page whose "
         "initial check failed is imported in the first)", story["unchanged_a_runs"][0].outcomes
         == {k: v for k, v in (("not-modified", n - failed), ("new", failed)) if v}
         and all(p.outcomes == {"not-modified": n} for p in story["unchanged_a_runs"][1:])),
        (f"unchanged B: {[p.outcomes for p in story['unchanged_b_runs']]}",
         all(p.outcomes == {"unchanged": n} for p in story["unchanged_b_runs"])),
        (f"changed: {revised} article.revised events appended ({story['changed_events']} "
         f"events in all), expected exactly {expected}",
         revised == expected == story["changed_events"]
         and story["changed"].outcomes == {"revised": expected, "not-modified": n - expected}),
        (f"naive: {plain.outcomes}", plain.outcomes.get("empty", 0) == 0),
    ]  # fmt: skip
    for text, ok in consistent:
        print(f"{'OK    ' if ok else 'WRONG '} {text}")
    for text, met in checks:
        print(f"{'MET   ' if met else 'MISSED'} {text} (target >= {TARGET_RATIO:g}x)")
    return all(ok for _, ok in consistent) and all(met for _, met in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)  # the daemon's default
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="unchanged cycles A and B, each run this many times (median)",
    )
    parser.add_argument("--naive-pages", type=int, default=0,
                        help="time the naive loop on the first M pages only (0: all)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.pages < CHANGED_EVERY:
        parser.error(f"--pages must be at least {CHANGED_EVERY}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sys.path.insert(0, str(REPO))
    from daemon import log as daemon_log

    daemon_log.configure(level="warning", fmt="json")  # warnings and errors to stderr
    try:
        with page_server(args.pages) as server:
            print(f"page server at {server.base}; storyline cycles...", flush=True)
            story = storyline(args, server.base)
            print(f"storyline done; naive loop over {args.naive_pages or args.pages} "
                  "pages...", flush=True)  # fmt: skip
            plain = naive(args, server.base)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    return 0 if report(args, server, story, plain) else 1


if __name__ == "__main__":
    sys.exit(main())
