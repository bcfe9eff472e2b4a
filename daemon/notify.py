"""The systemd notification protocol (sd_notify(3)), without libsystemd.

systemd passes ``NOTIFY_SOCKET`` (a datagram socket path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``/``WATCHDOG_PID``. A notification
is one datagram of newline-separated ``KEY=value`` fields.

Outside systemd (a terminal, the tests) ``NOTIFY_SOCKET`` is unset and every method is a
no-op, so the daemon calls them unconditionally. A failed send is logged once and never
raised: the service must not die because the notify socket went away.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

logger = structlog.get_logger(__name__)


def _monotonic_usec() -> int:
    # systemd compares MONOTONIC_USEC against its own CLOCK_MONOTONIC reading.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(notify_socket: str | None) -> str | None:
    """Map ``NOTIFY_SOCKET`` to a ``sendto`` address; None if unset or unsupported."""
    if not notify_socket:
        return None
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    # e.g. "vsock:..." (systemd >= 254, for VMs): libsystemd supports it, we do not need it.
    logger.warning("notify_socket_unsupported", notify_socket=notify_socket)
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) advises."""
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


def _one_line(text: str) -> str:
    # A newline inside STATUS would start a new field (a caller could send READY=1 by accident).
    return " ".join(text.splitlines())


class Notifier:
    """Sends sd_notify datagrams over one AF_UNIX SOCK_DGRAM socket, opened on first use."""

    def __init__(
        self,
        address: str | None,
        watchdog_interval: float | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        self.enabled = address is not None
        self.watchdog_interval = watchdog_interval if self.enabled else None
        self._address = address
        self._monotonic_usec = monotonic_usec
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(_socket_address(env.get("NOTIFY_SOCKET")), _watchdog_interval(env))

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *self._status_field(status))

    def status(self, text: str) -> None:
        self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1", *self._status_field(status))

    def reloading(self) -> None:
        # systemd >= 253 (Type=notify-reload) requires MONOTONIC_USEC with RELOADING=1;
        # older versions ignore the extra field. Send READY=1 when the reload is done.
        self.send("RELOADING=1", f"MONOTONIC_USEC={self._monotonic_usec()}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more start/stop time (e.g. a long migration before READY=1)."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def send(self, *fields: str) -> None:
        if self._address is None or not fields:
            return
        try:
            self._open().sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            self._warn_once(exc)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _open(self) -> socket.socket:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        return self._socket

    def _status_field(self, status: str | None) -> tuple[str, ...]:
        return () if status is None else (f"STATUS={_one_line(status)}",)

    def _warn_once(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("notify_send_failed", address=self._address, error=str(exc))


class WatchdogGate:
    """Pings the watchdog only while the main loop keeps turning.

    The main loop calls ``beat()`` once per completed iteration (an idle wait that returned
    counts: an idle daemon is healthy) and ``maybe_ping(now)`` with a monotonic time. A loop
    stuck in a hung call stops beating, the pings stop, and systemd restarts the service
    after ``WatchdogSec``. Pinging from a separate timer thread would hide exactly that hang.
    """

    def __init__(self, ping: Callable[[], None], interval: float | None) -> None:
        self._ping = ping
        self._interval = interval
        self._last_ping: float | None = None
        self._beaten = False

    @classmethod
    def for_notifier(cls, notifier: Notifier) -> WatchdogGate:
        return cls(notifier.watchdog, notifier.watchdog_interval)

    def beat(self) -> None:
        self._beaten = True

    def maybe_ping(self, now: float) -> bool:
        """Send WATCHDOG=1 if the interval elapsed and the loop beat since; True if sent."""
        if self._interval is None or not self._beaten:
            return False
        if self._last_ping is not None and now - self._last_ping < self._interval:
            return False
        self._ping()
        self._last_ping = now
        self._beaten = False
        return True
