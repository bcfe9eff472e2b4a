"""Polling benchmark: one storyline poll cycle against a naive feedparser loop.

usage: python bench/poll.py [--feeds N] [--latency-ms 30] [--workers 64]
                            [--per-host-concurrency 64] [--parser-processes 0]
                            [--naive-feeds M]

1. Server: bench/feedserver.py in its own process (asyncio, 127.0.0.1 only): N RSS 2.0
   feeds of 20 entries (~12 KB each), every answer delayed by --latency-ms, requests
   served concurrently. Its CPU time and how late its sleeps wake up are reported per
   phase, to show it is not the bottleneck.
2. Naive (child process): ``feedparser.parse(url)`` over the feeds, one after the other,
   as diffengine and rss2email do. --naive-feeds M < N measures the first M and
   extrapolates to N (said so in the output).
   --workers is 64 because 30 ms of latency caps N threads at N / 0.03 checks/s before
   any CPU is spent: 32 threads could not reach 1,000 feeds/s even with free checks.
3. Storyline (another child process, so its peak RSS is its own): a fresh SQLite
   database in a temporary folder, N sources added with ``Registry.add``, then, timed:
   cold ``run_cycle(all_sources=True)``; ``projector.catch_up()``; warm cycle A (the
   server answers 304 to If-None-Match); warm cycle B (the server drops validators
   and sends the same bytes: the body-hash shortcut). Peak RSS: ``ru_maxrss`` of the
   polling process, VmHWM of each parser worker (they are forked by the forkserver, so
   are not our children), and ``ru_maxrss`` of RUSAGE_CHILDREN once they are stopped.

Every wait has a deadline; the temporary folder is removed and the server stopped,
even on error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import BenchError, child_server
from common import control as server_control

REPO = Path(__file__).resolve().parents[1]
FEEDSERVER = Path(__file__).resolve().parent / "feedserver.py"
RESULT_PREFIX = "BENCH-RESULT "

SERVER_READY_DEADLINE = 120.0
SERVER_STOP_DEADLINE = 5.0
CONTROL_TIMEOUT = 10.0
NAIVE_FETCH_TIMEOUT = 20.0  # socket timeout of each feedparser.parse(url)
CHILD_DEADLINE = 1800.0

TARGET_RATIO = 10.0
TARGET_WARM_FEEDS_PER_S = 1000.0
TARGET_RSS_MB = 150.0


# -- the feed server ------------------------------------------------------------------


@contextmanager
def feed_server(feeds: int, latency_ms: float) -> Iterator[str]:
    """bench/feedserver.py as a child process; yields its base URL; always stopped."""
    command = [sys.executable, str(FEEDSERVER), "--feeds", str(feeds),
               "--latency-ms", str(latency_ms)]  # fmt: skip
    with child_server(command, name="feed server", ready_seconds=SERVER_READY_DEADLINE,
                      stop_seconds=SERVER_STOP_DEADLINE) as fields:  # fmt: skip
        yield f"http://127.0.0.1:{int(fields[0])}"


def control(base: str, path: str) -> dict[str, Any]:
    return server_control(base, path, CONTROL_TIMEOUT)


def feed_url(base: str, number: int) -> str:
    return f"{base}/feed/{number:04d}.xml"


# -- children -------------------------------------------------------------------------


def run_child(kind: str, args: argparse.Namespace, base: str, tmp: Path) -> dict[str, Any]:
    """This script again, as ``--child kind``; its result is its last RESULT line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--base", base,
               "--tmp", str(tmp),
               "--feeds", str(args.feeds), "--workers", str(args.workers),
               "--per-host-concurrency", str(args.per_host_concurrency),
               "--parser-processes", str(args.parser_processes),
               "--naive-feeds", str(args.naive_feeds)]  # fmt: skip
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=CHILD_DEADLINE
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{kind} child did not finish in {CHILD_DEADLINE:g} s") from exc
    lines = [x for x in done.stdout.decode().splitlines() if x.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"{kind} child failed (exit {done.returncode})")
    return dict(json.loads(lines[-1][len(RESULT_PREFIX) :]))


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def child_naive(args: argparse.Namespace) -> dict[str, Any]:
    import socket

    import feedparser

    socket.setdefaulttimeout(NAIVE_FETCH_TIMEOUT)  # feedparser.parse(url) has no timeout
    count = min(args.naive_feeds or args.feeds, args.feeds)
    control(args.base, "/_mode/etag")
    control(args.base, "/_reset")
    entries = bad = 0
    started = time.perf_counter()
    for number in range(count):
        parsed = feedparser.parse(feed_url(args.base, number))
        entries += len(parsed.entries)
        bad += parsed.get("status") != 200 or len(parsed.entries) == 0
    elapsed = time.perf_counter() - started
    return {
        "measured": count,
        "seconds": elapsed,
        "entries": entries,
        "bad": bad,
        "server": control(args.base, "/_stats"),
        "rss_mb": _maxrss_mb(resource.RUSAGE_SELF),
    }


def child_storyline(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from daemon import log as daemon_log

    daemon_log.configure(level="warning", fmt="json")  # warnings and errors to stderr
    tmp = Path(args.tmp)
    try:
        return _storyline_phases(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the parent removes it too, if we are killed


def _storyline_phases(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from daemon.config import SourceEntry, from_mapping
    from daemon.service import Services, tune_gc, utc_now
    from storage.schema import articles, events

    raw = {
        "storage": {"url": "sqlite:///storyline.db"},
        "inbox": {"path": "inbox", "archive": "archive", "rejected": "rejected"},
        "http": {
            "allow_private_networks": True,
            "per_host_min_delay": 0.0,
            "per_host_concurrency": args.per_host_concurrency,
        },
        "scheduler": {"workers": args.workers, "parser_processes": args.parser_processes},
    }
    services = Services(from_mapping(raw, base_dir=tmp))
    tune_gc()  # as the storyline command does
    out: dict[str, Any] = {}
    try:
        services.prepare()
        started = time.perf_counter()
        now = utc_now()
        for number in range(args.feeds):
            entry = SourceEntry(kind="feed", url=feed_url(args.base, number),
                                name=f"news {number:04d}")  # fmt: skip
            services.registry.add(entry, origin="cli", now=now)
        out["setup_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        services.poller  # noqa: B018 -- starts the HTTP client and the parser processes
        out["pool_start_seconds"] = time.perf_counter() - started

        control(args.base, "/_mode/etag")
        out["cold"] = _timed_cycle(services, args.base)
        started = time.perf_counter()
        out["catch_up_events"] = services.projector.catch_up()
        out["catch_up_seconds"] = time.perf_counter() - started
        out["warm_a"] = _timed_cycle(services, args.base)
        control(args.base, "/_mode/plain")
        out["warm_b"] = _timed_cycle(services, args.base)
        control(args.base, "/_mode/etag")
        services.projector.catch_up()
        with services.engine.connect() as conn:
            out["articles"] = conn.execute(select(func.count()).select_from(articles)).scalar()
            out["events"] = conn.execute(select(func.count()).select_from(events)).scalar()
        # the forkserver (and resource tracker) are our children, the workers theirs
        below = _descendants(os.getpid())
        out["workers_hwm_mb"] = [_hwm_mb(pid) for pid, depth in below.items() if depth > 1]
        out["helpers_hwm_mb"] = [_hwm_mb(pid) for pid, depth in below.items() if depth == 1]
        out["rss_self_mb"] = _maxrss_mb(resource.RUSAGE_SELF)
    finally:
        services.close()
    _stop_forkserver()
    out["rss_children_mb"] = _maxrss_mb(resource.RUSAGE_CHILDREN)
    return out


def _timed_cycle(services: Any, base: str) -> dict[str, Any]:
    from sqlalchemy import func, select

    from storage.schema import fetch_log

    with services.engine.connect() as conn:
        mark = conn.execute(select(func.coalesce(func.max(fetch_log.c.id), 0))).scalar()
    control(base, "/_reset")
    before = _cpu_by_pid(_workers())
    cpu_self = time.process_time()
    started = time.perf_counter()
    report = services.poller.run_cycle(all_sources=True)
    elapsed = time.perf_counter() - started
    cpu_self = time.process_time() - cpu_self
    # a worker replaced during the cycle: its successor counts from 0, and the one that
    # was killed is missed (its last reading is gone with it)
    after = _cpu_by_pid(_workers() | set(before))
    cpu_workers = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    server = control(base, "/_stats")
    with services.engine.connect() as conn:
        errors = conn.execute(
            select(fetch_log.c.error, func.count())
            .where(fetch_log.c.id > mark, fetch_log.c.outcome == "failed")
            .group_by(fetch_log.c.error)
            .limit(5)
        ).all()
    return {
        "seconds": elapsed,
        "checked": report.checked,
        "outcomes": dict(report.outcomes),
        "events": report.events,
        "errors": [[str(error)[:200], count] for error, count in errors],
        "server": server,
        "cpu_self": cpu_self,
        "cpu_workers": cpu_workers,
    }


def _workers() -> set[int]:
    """The parser processes: the forkserver's children, below our children."""
    return {pid for pid, depth in _descendants(os.getpid()).items() if depth > 1}


def _cpu_by_pid(pids: set[int]) -> dict[int, float]:
    """User plus system CPU seconds of each of ``pids`` still running (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return found


def _stop_forkserver() -> None:
    """Stop multiprocessing's forkserver so it is reaped and counted in RUSAGE_CHILDREN."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if callable(stop):
        stop()


def _descendants(root: int) -> dict[int, int]:
    """Every process below ``root`` (from /proc), with its depth: 1 for a child."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, int] = {}
    frontier, depth = {root}, 0
    while frontier:
        depth += 1
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
        found.update(dict.fromkeys(frontier, depth))
    return found


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


# -- report ---------------------------------------------------------------------------


def report(args: argparse.Namespace, naive: dict[str, Any], story: dict[str, Any]) -> bool:
    n = args.feeds
    naive_seconds = naive["seconds"] * n / naive["measured"]
    cold = story["cold"]["seconds"]
    catch_up = story["catch_up_seconds"]
    warm_a, warm_b = story["warm_a"]["seconds"], story["warm_b"]["seconds"]
    workers_mb = story["workers_hwm_mb"]
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.platform()}")  # fmt: skip
    print(f"feeds: {n} x 20 entries (~12 KB) on 127.0.0.1, {args.latency_ms:g} ms added latency")
    print(f"storyline: workers={args.workers}, per_host_concurrency="
          f"{args.per_host_concurrency}, parser processes={len(story['workers_hwm_mb'])}, "
          f"SQLite synchronous=FULL (default)")  # fmt: skip
    print(f"setup (not timed): {n} sources added in {story['setup_seconds']:.1f} s, "
          f"parser pool started in {story['pool_start_seconds']:.2f} s")  # fmt: skip
    print()
    rows = []
    extrapolated = naive["measured"] < n
    note = f" (first {naive['measured']}, extrapolated)" if extrapolated else ""
    rows.append(("naive feedparser loop" + note, naive_seconds, "", naive["server"]))
    for key, label in (("cold", "cold cycle"), ("warm_a", "warm A: 304 (ETag)"),
                       ("warm_b", "warm B: same bytes, no validator")):  # fmt: skip
        phase = story[key]
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(phase["outcomes"].items()))
        rows.append((label, phase["seconds"], outcomes, phase["server"]))
    rows.insert(2, ("projector catch-up", catch_up, f"{story['catch_up_events']} events", None))
    rows.insert(3, ("cold cycle + catch-up", cold + catch_up, "", None))
    server_head = "server: cpu/wall, late avg/max, conns"
    print(f"{'phase':44} {'seconds':>8} {'feeds/s':>9}  {server_head:36} outcomes")
    for label, seconds, outcomes, server in rows:
        srv = ""
        if server:
            srv = (f"{server['cpu_seconds']:.2f}/{server['wall_seconds']:.2f} s, "
                   f"{server['overshoot_mean_ms']:.0f}/{server['overshoot_max_ms']:.0f} ms, "
                   f"{server['connections']}")  # fmt: skip
        print(f"{label:44} {seconds:8.2f} {n / seconds:9.0f}  {srv:36} {outcomes}")
    print()
    cores = len(os.sched_getaffinity(0))
    print(f"CPU seconds per cycle (polling process + parser workers; {cores} cores: "
          f"{cores * cold:.2f} s available in the cold cycle):")  # fmt: skip
    for key, label in (("cold", "cold"), ("warm_a", "warm A"), ("warm_b", "warm B")):
        phase = story[key]
        print(f"  {label:7} {phase['cpu_self']:.2f} + {phase['cpu_workers']:.2f} = "
              f"{phase['cpu_self'] + phase['cpu_workers']:.2f} s")  # fmt: skip
    print(f"database after the run: {story['events']} events, {story['articles']} articles")
    print(f"naive loop: {naive['entries']} entries, {naive['bad']} bad fetches, "
          f"peak RSS {naive['rss_mb']:.0f} MB")  # fmt: skip
    ratio, ratio_all = naive_seconds / cold, naive_seconds / (cold + catch_up)
    warm = min(n / warm_a, n / warm_b)
    rss = story["rss_self_mb"]
    print(f"peak RSS, polling process (ru_maxrss): {rss:.0f} MB")
    print(f"peak RSS, parser workers (VmHWM each): "
          f"{', '.join(f'{m:.0f}' for m in workers_mb)} MB (sum {sum(workers_mb):.0f} MB); "
          f"forkserver and resource tracker: "
          f"{', '.join(f'{m:.0f}' for m in story['helpers_hwm_mb'])} MB")  # fmt: skip
    print(f"ru_maxrss of RUSAGE_CHILDREN (after they stopped): "
          f"{story['rss_children_mb']:.0f} MB -- the workers are the forkserver's children, "
          f"not ours, and Linux counts a child's RSS at fork, before its exec, so this is "
          f"the polling process's size when it started the forkserver")  # fmt: skip
    print()
    checks = [
        (f"cold cycle {ratio:.1f}x faster than naive (with catch-up {ratio_all:.1f}x)",
         ratio >= TARGET_RATIO, f">= {TARGET_RATIO:g}x"),
        (f"warm cycles {warm:.0f} feeds/s (slower of A and B)",
         warm >= TARGET_WARM_FEEDS_PER_S, f">= {TARGET_WARM_FEEDS_PER_S:g} feeds/s"),
        (f"polling process peak RSS {rss:.0f} MB", rss <= TARGET_RSS_MB,
         f"<= {TARGET_RSS_MB:g} MB"),
    ]  # fmt: skip
    for text, met, target in checks:
        print(f"{'MET   ' if met else 'MISSED'} {text} (target {target})")
    expected = {"cold": "new", "warm_a": "not-modified", "warm_b": "unchanged"}
    consistent = all(story[k]["outcomes"] == {v: n} for k, v in expected.items())
    if not consistent or naive["bad"]:
        print("WARNING: not every feed had the expected outcome; see the table")
    for key in expected:
        for error, count in story[key]["errors"]:
            print(f"  {key}: {count} failed: {error}")
    return all(met for _, met, _ in checks) and consistent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--per-host-concurrency", type=int, default=64)
    parser.add_argument("--parser-processes", type=int, default=0, help="0: one per CPU")
    parser.add_argument("--naive-feeds", type=int, default=0,
                        help="time the naive loop on the first M feeds only (0: all)")  # fmt: skip
    parser.add_argument("--child", choices=("naive", "storyline"), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "naive":
        emit(child_naive(args))
        return 0
    if args.child == "storyline":
        emit(child_storyline(args))
        return 0
    # SIGTERM unwinds like Ctrl-C: children killed, server stopped, folder removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="storyline-bench-poll-"))
    try:
        with feed_server(args.feeds, args.latency_ms) as base:
            print(f"feed server at {base}; naive loop...", flush=True)
            naive = run_child("naive", args, base, tmp)
            print(f"naive: {naive['measured']} feeds in {naive['seconds']:.1f} s; "
                  "storyline...", flush=True)  # fmt: skip
            story = run_child("storyline", args, base, tmp)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report(args, naive, story) else 1


if __name__ == "__main__":
    sys.exit(main())
