"""End-to-end helpers: the real ``storyline`` process against a temporary directory.

Every wait is a bounded poll (deadline + short sleep). Every process started here is
killed and reaped in a finalizer; every sqlite3 connection, socket and file is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "tests" / "fixtures" / "seeds"
SAMPLE_CONFIG = REPO / "config.toml"

_SCRIPT = Path(sys.executable).with_name("storyline")
STORYLINE: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "daemon.cli"]

# Variables that would make a run depend on the caller's environment.
_SCRUBBED = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "STORYLINE_FAULTS",
    "STORYLINE_CONFIG",
    "STORYLINE_DATABASE_URL",
    "STORYLINE_LOG_FORMAT",
)

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    alive: DaemonProcess | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.popen.poll() is not None:
            raise AssertionError(
                f"the daemon exited with {alive.popen.returncode} while waiting for {what}\n"
                + alive.log_text()[-4000:]
            )
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last {value!r})")
        time.sleep(interval)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for everything we write
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["STORYLINE_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class DaemonProcess:
    """One ``storyline run``: its Popen and its stderr log (JSON lines)."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    events.append(record)
        return events

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.log_events() if e.get("event") == event]

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.log_events() if e.get("level") in ("error", "critical")]

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_for(lambda: self.logged("ready"), timeout, "the 'ready' log line", alive=self)

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the daemon did not exit within {timeout}s\n" + self.log_text()[-4000:]
            ) from None

    def stop(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=30)


class Storyline:
    """A temporary installation: config, folders, database, and the CLI to drive it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config.toml"
        self.stage = root / "stage"
        self.stage.mkdir(parents=True, exist_ok=True)
        self.processes: list[DaemonProcess] = []
        self._runs = 0
        self.write_config()

    # -- set-up --------------------------------------------------------------------

    def write_config(self, **overrides: Any) -> None:
        """The sample config.toml with ``section__key=value`` overrides (fast defaults)."""
        raw: dict[str, dict[str, Any]] = tomllib.loads(SAMPLE_CONFIG.read_text("utf-8"))
        settings = {"inbox__stable_seconds": 0.5, "inbox__rescan_seconds": 2.0, **overrides}
        for dotted, value in settings.items():
            section, key = dotted.split("__", 1)
            raw.setdefault(section, {})[key] = value
        lines = []
        for section, values in raw.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
            lines.append("")
        self.config.write_text("\n".join(lines), encoding="utf-8")
        self.settings = raw
        var = self.root
        self.inbox = var / raw["inbox"]["path"]
        self.archive = var / raw["inbox"]["archive"]
        self.rejected = var / raw["inbox"]["rejected"]
        url = raw["storage"]["url"]
        assert url.startswith("sqlite:///"), url
        self.db = var / url[len("sqlite:///") :]

    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        config: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        command = [*STORYLINE, *(["--config", str(self.config)] if config else []), *args]
        return subprocess.run(
            command,
            env=base_env(env),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_all(
        self,
        commands: Sequence[Sequence[str]],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run several commands at once (each start costs most of a second), like
        ``cli``; in the order given. Only for commands that cannot get in each other's way."""
        with contextlib.ExitStack() as stack:
            running = [
                stack.enter_context(
                    subprocess.Popen(
                        [*STORYLINE, "--config", str(self.config), *args],
                        env=base_env(env),
                        cwd=self.root,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
                for args in commands
            ]
            results = []
            for args, process in zip(commands, running, strict=True):
                out, err = process.communicate(timeout=timeout)
                results.append(
                    subprocess.CompletedProcess(list(args), process.returncode, out, err)
                )
        return results

    def init(self) -> None:
        result = self.cli("init")
        assert result.returncode == 0, result.stderr
        assert self.inbox.is_dir() and self.archive.is_dir() and self.rejected.is_dir()

    def start(
        self, env: Mapping[str, str] | None = None, *, wait_ready: bool = True
    ) -> DaemonProcess:
        self._runs += 1
        log_path = self.root / f"daemon-{self._runs}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [*STORYLINE, "--config", str(self.config), "run"],
                env=base_env(env),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        process = DaemonProcess(popen, log_path)
        self.processes.append(process)
        if wait_ready:
            process.wait_ready()
        return process

    def cleanup(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            print(f"----- {process.log_path.name} (exit {process.popen.returncode}) -----")
            print(process.log_text()[-6000:])

    # -- files ---------------------------------------------------------------------

    def drop(self, name: str, data: bytes | str) -> Path:
        """Write ``name`` into the inbox the polite way: a dot name, then a rename."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        temp = self.inbox / f".{name}.part"
        temp.write_bytes(payload)
        target = self.inbox / name
        os.rename(temp, target)
        return target

    def inbox_names(self) -> list[str]:
        return sorted(os.listdir(self.inbox))

    def archived(self) -> list[Path]:
        """Every file under archive/, relative to it."""
        return sorted(p.relative_to(self.archive) for p in self.archive.rglob("*") if p.is_file())

    # -- the database (read-only, like any other reader) -----------------------------

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0]

    def count(self, table: str, where: str = "1=1", params: Sequence[Any] = ()) -> int:
        return int(self.scalar(f"select count(*) from {table} where {where}", params))


class NotifyListener:
    """The service manager's end of sd_notify: a bound datagram socket under /tmp
    (short path: AF_UNIX paths are limited to 108 bytes), read by a thread that stamps
    each datagram with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sln", dir="/tmp")
        self.path = os.path.join(self.dir, "n")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self._messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def messages(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._messages)

    def with_field(self, field: str) -> list[tuple[float, str]]:
        """Datagrams holding ``field`` (e.g. "READY=1") as one of their lines."""
        return [(t, m) for t, m in self.messages() if field in m.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def seed_files() -> list[Path]:
    return sorted(SEEDS.glob("*.txt"))


def article_text(i: int) -> str:
    return (
        f"Staged headline number {i:05d} about the news\n"
        f"First paragraph of story {i}. It says something.\n"
        f"Second paragraph of story {i}. It says more.\n"
        f"Third paragraph of story {i}. It ends here.\n"
    )


def article_title(i: int) -> str:
    return f"Staged headline number {i:05d} about the news"


def stage_articles(directory: Path, count: int, *, old: bool = False) -> list[str]:
    """Write ``count`` small unique articles a00000.txt... into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    past = time.time() - 3600
    for i in range(count):
        name = f"a{i:05d}.txt"
        path = directory / name
        path.write_text(article_text(i), encoding="utf-8")
        if old:
            os.utime(path, (past, past))
        names.append(name)
    return names


def move_all(names: Sequence[str], source: Path, target: Path) -> None:
    for name in names:
        os.rename(source / name, target / name)


def kill_quietly(process: DaemonProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=30)
