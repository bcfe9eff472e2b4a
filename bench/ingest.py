"""Ingest benchmark: the watch folder of a running daemon against a plain-sqlite3 floor.

usage: python bench/ingest.py [--files N] [--latency-samples M] [--keep]

1. Corpus: N seed-shaped text files (title line, optional standfirst, paragraphs,
   2-9 KB each, unique titles), made by ../shared/tools/make_corpus.py when present,
   else by the generator below.
2. Floor: one stdlib sqlite3 connection reads, hashes (sha256) and inserts each file
   as one event row plus one upserted article row, in batches of 500 (WAL,
   synchronous=FULL, 32 MiB of dirty pages before a spill, BEGIN IMMEDIATE per batch,
   like the daemon).
3. Throughput: ``storyline run`` as a subprocess; once it logs "ready", the N files
   are renamed into its inbox from a staging folder on the same filesystem; the clock
   runs from the first rename until ``select count(*) from articles`` reaches N.
4. Latency: M single files dropped into the now idle daemon, one at a time (written
   under a dot name, then renamed); each is timed from the rename until its row is
   visible in ``articles`` (read-only polling every 2 ms).

Every wait has a deadline; the temporary folder is removed unless --keep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import WORDS, BenchError

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS_TOOL = REPO.parent / "shared" / "tools" / "make_corpus.py"

BATCH = 500
POLL_THROUGHPUT = 0.01
POLL_LATENCY = 0.002
READY_DEADLINE = 60.0
STOP_DEADLINE = 30.0
SAMPLE_DEADLINE = 10.0
SAMPLE_GAP = 0.05

TARGET_FILES_PER_S = 2500.0
TARGET_RATIO = 0.75
TARGET_P50_MS = 150.0
TARGET_P99_MS = 500.0


# -- corpus -----------------------------------------------------------------------------


def _sentence(r: random.Random) -> str:
    words = [r.choice(WORDS) for _ in range(r.randint(8, 28))]
    words[0] = words[0].capitalize()
    return " ".join(words) + r.choice(".....?!")


def _paragraph(r: random.Random) -> str:
    return " ".join(_sentence(r) for _ in range(r.randint(1, 4)))


def _article(r: random.Random, serial: str) -> str:
    title = f"{serial}: " + " ".join(r.choice(WORDS) for _ in range(r.randint(6, 14)))
    lines = [title[0].upper() + title[1:]]
    if r.random() < 0.5:
        lines.append(_sentence(r))
    target, size = r.randint(2000, 9000), 0
    while size < target:
        lines.append(_paragraph(r))
        size += len(lines[-1]) + 1
    return "\n".join(lines) + "\n"


def generate_corpus(out: Path, count: int, *, seed: int, prefix: str) -> list[Path]:
    """``count`` files ``{prefix}-NNNNNN.txt`` in ``out``, seed-shaped, unique titles."""
    out.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    paths = []
    for i in range(count):
        path = out / f"{prefix}-{i:06d}.txt"
        path.write_text(_article(r, f"{prefix.capitalize()} {i}"), encoding="utf-8")
        paths.append(path)
    return paths


def make_corpus(out: Path, count: int, *, seed: int = 1) -> tuple[list[Path], str]:
    """The corpus in ``out`` (nothing else in it) and which generator made it."""
    if SHARED_CORPUS_TOOL.is_file():
        subprocess.run(
            [sys.executable, str(SHARED_CORPUS_TOOL), str(out), str(count), "--seed", str(seed)],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        paths = sorted(p for p in out.iterdir() if p.is_file())
        if len(paths) != count:
            raise BenchError(f"{SHARED_CORPUS_TOOL} made {len(paths)} files, not {count}")
        return paths, "shared/tools/make_corpus.py"
    return generate_corpus(out, count, seed=seed, prefix="article"), "bench/ingest.py"


# -- the floor --------------------------------------------------------------------------

_FLOOR_SCHEMA = """
CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    stream_id TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE TABLE articles (
    article_id TEXT PRIMARY KEY,
    article_key TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    version_count INTEGER NOT NULL,
    last_changed_at TEXT NOT NULL
);
"""

_FLOOR_EVENT = (
    "INSERT INTO events (event_id, stream_id, stream_version, idempotency_key, event_type,"
    " recorded_at, payload) VALUES (?, ?, 1, ?, 'article.discovered', ?, ?)"
)
_FLOOR_ARTICLE = (
    "INSERT INTO articles (article_id, article_key, title, body, content_sha256,"
    " version_count, last_changed_at) VALUES (?, ?, ?, ?, ?, 1, ?)"
    " ON CONFLICT (article_id) DO UPDATE SET title = excluded.title, body = excluded.body,"
    " content_sha256 = excluded.content_sha256, version_count = version_count + 1,"
    " last_changed_at = excluded.last_changed_at"
)


def run_floor(database: Path, files: Sequence[Path]) -> float:
    """Seconds to read, hash and insert ``files`` with nothing but sqlite3."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA cache_spill={32 * 1024 * 1024 // 4096}")  # the daemon's bound,
    conn.execute("PRAGMA cache_spill=ON")  # and spilling on (see storage/db.py)
    conn.executescript(_FLOOR_SCHEMA)
    started = time.perf_counter()
    for start in range(0, len(files), BATCH):
        events, articles = [], []
        for path in files[start : start + BATCH]:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            text = data.decode("utf-8")
            title, _, body = text.partition("\n")
            key = f"file:{path.name}"
            article_id = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            payload = json.dumps({"article_id": article_id, "title": title, "sha256": digest})
            events.append((str(uuid.uuid4()), article_id, f"{key}|{digest}", now, payload))
            articles.append((article_id, key, title, body, digest, now))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_FLOOR_EVENT, events)
        conn.executemany(_FLOOR_ARTICLE, articles)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


# -- the daemon -------------------------------------------------------------------------


def storyline_command() -> list[str]:
    beside = Path(sys.executable).with_name("storyline")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("storyline")
    if found:
        return [found]
    return [sys.executable, "-m", "daemon.cli"]


def write_config(root: Path) -> Path:
    config = root / "config.toml"
    config.write_text(
        "[storage]\n"
        f'url = "sqlite:///{root / "storyline.db"}"\n'
        'synchronous = "FULL"\n'
        "[inbox]\n"
        f'path = "{root / "inbox"}"\n'
        f'archive = "{root / "archive"}"\n'
        f'rejected = "{root / "rejected"}"\n'
        "[log]\n"
        'level = "info"\n'
        'format = "json"\n',
        encoding="utf-8",
    )
    return config


@dataclass
class Daemon:
    root: Path
    config: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def prepare(cls, root: Path) -> Daemon:
        config = write_config(root)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STORYLINE_")}
        env["PYTHONUNBUFFERED"] = "1"
        daemon = cls(root, config, root / "daemon.log", env=env)
        subprocess.run(
            [*storyline_command(), "--config", str(config), "init"],
            check=True,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
        return daemon

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*storyline_command(), "--config", str(self.config), "run"],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: self._alive() and self._logged("ready"),
            READY_DEADLINE,
            0.05,
            "the daemon to log 'ready'",
        )

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_DEADLINE)
        return self.process.returncode

    def _alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(
                f"the daemon exited with {self.process.returncode}:\n{self.log_tail()}"
            )
        return True

    def _logged(self, event: str) -> bool:
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                if json.loads(line).get("event") == event:
                    return True
            except (ValueError, AttributeError):
                continue
        return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], deadline: float, interval: float, what: str) -> float:
    """Poll ``check`` until true; returns the seconds waited; BenchError after ``deadline``."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > deadline:
            raise BenchError(f"gave up after {deadline:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter() - started


def reader(database: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


@dataclass
class Throughput:
    seconds: float
    drop_seconds: float
    first_seconds: float  # first rename to the first row visible


def run_throughput(daemon: Daemon, files: Sequence[Path], inbox: Path) -> Throughput:
    database = daemon.root / "storyline.db"
    conn = reader(database)
    expected = len(files)
    deadline = max(300.0, expected / 50)
    try:
        started = time.perf_counter()
        for path in files:
            os.rename(path, inbox / path.name)
        dropped = time.perf_counter() - started

        first: list[float] = []

        def done() -> bool:
            daemon._alive()
            (count,) = conn.execute("SELECT count(*) FROM articles").fetchone()
            if count and not first:
                first.append(time.perf_counter() - started)
            return bool(count >= expected)

        wait_until(done, deadline, POLL_THROUGHPUT, f"{expected} rows in articles")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return Throughput(elapsed, dropped, first[0])


def run_latency(daemon: Daemon, samples: Sequence[Path], inbox: Path) -> list[float]:
    """Seconds from each single rename into the idle inbox until its row is visible."""
    conn = reader(daemon.root / "storyline.db")
    latencies = []
    try:
        for path in samples:
            data = path.read_bytes()
            hidden = inbox / f".{path.name}"
            with open(hidden, "wb") as f:
                f.write(data)
            key = f"file:{path.name}"
            time.sleep(SAMPLE_GAP)
            started = time.perf_counter()
            os.rename(hidden, inbox / path.name)
            while (
                conn.execute("SELECT 1 FROM articles WHERE article_key = ?", (key,)).fetchone()
                is None
            ):
                if time.perf_counter() - started > SAMPLE_DEADLINE:
                    daemon._alive()
                    raise BenchError(f"{path.name} not visible after {SAMPLE_DEADLINE:.0f} s")
                time.sleep(POLL_LATENCY)
            latencies.append(time.perf_counter() - started)
    finally:
        conn.close()
    return latencies


# -- reporting --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def machine() -> dict[str, str]:
    info = {
        "nproc": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(
    *,
    files: int,
    megabytes: float,
    corpus_by: str,
    floor_s: float,
    run: Throughput,
    latencies: Sequence[float],
) -> None:
    floor_rate = files / floor_s
    rate = files / run.seconds
    ratio = rate / floor_rate
    rows = [
        ("corpus", f"{files} files, {megabytes:.1f} MB ({corpus_by})", ""),
        ("floor (sqlite3)", f"{floor_rate:,.0f} files/s ({floor_s:.2f} s)", ""),
        (
            "storyline",
            f"{rate:,.0f} files/s ({run.seconds:.2f} s, drop {run.drop_seconds:.2f} s, "
            f"first row {run.first_seconds:.2f} s)",
            f">= {TARGET_FILES_PER_S:,.0f}: {verdict(rate >= TARGET_FILES_PER_S)}",
        ),
        ("ratio", f"{ratio:.2f}", f">= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}"),
    ]
    if latencies:
        p50 = percentile(latencies, 50) * 1000
        p99 = percentile(latencies, 99) * 1000
        rows += [
            (
                "latency p50",
                f"{p50:.0f} ms ({len(latencies)} samples)",
                f"<= {TARGET_P50_MS:.0f} ms: {verdict(p50 <= TARGET_P50_MS)}",
            ),
            (
                "latency p99",
                f"{p99:.0f} ms (max {max(latencies) * 1000:.0f}, "
                f"mean {statistics.fmean(latencies) * 1000:.0f})",
                f"<= {TARGET_P99_MS:.0f} ms: {verdict(p99 <= TARGET_P99_MS)}",
            ),
        ]
    for key, value in machine().items():
        rows.append((key, value, ""))
    width = max(len(r[0]) for r in rows)
    middle = max(len(r[1]) for r in rows if r[2])
    for name, value, target in rows:
        line = (
            f"{name:<{width}}  {value:<{middle}}  {target}"
            if target
            else f"{name:<{width}}  {value}"
        )
        print(line.rstrip())


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files for the throughput run")
    parser.add_argument(
        "--latency-samples", type=int, default=100, help="single files for the latency run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.files < 1 or args.latency_samples < 0:
        parser.error("--files must be at least 1 and --latency-samples at least 0")

    root = Path(tempfile.mkdtemp(prefix="storyline-bench-"))
    daemon: Daemon | None = None
    try:
        print(f"making {args.files} files in {root} ...", file=sys.stderr)
        files, corpus_by = make_corpus(root / "staging", args.files)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        samples = generate_corpus(root / "samples", args.latency_samples, seed=7, prefix="latency")

        print("floor: plain sqlite3 ...", file=sys.stderr)
        floor_s = run_floor(root / "floor.db", files)

        print("storyline: starting the daemon ...", file=sys.stderr)
        daemon = Daemon.prepare(root)
        daemon.start()
        inbox = root / "inbox"
        print(f"storyline: dropping {len(files)} files ...", file=sys.stderr)
        throughput = run_throughput(daemon, files, inbox)
        print(f"storyline: {len(samples)} single files ...", file=sys.stderr)
        time.sleep(1.0)
        latencies = run_latency(daemon, samples, inbox)
        code = daemon.stop()
        if code != 0:
            raise BenchError(f"the daemon exited with {code} on SIGTERM:\n{daemon.log_tail()}")
        report(
            files=len(files),
            megabytes=megabytes,
            corpus_by=corpus_by,
            floor_s=floor_s,
            run=throughput,
            latencies=latencies,
        )
        return 0
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if daemon is not None:
            daemon.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
