"""sd_notify over real datagram sockets: the exact bytes systemd would receive."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.notify import Notifier, WatchdogGate


class Listener:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def receive(self) -> bytes:
        self.sock.settimeout(2)
        return self.sock.recv(65536)

    def assert_nothing_more(self) -> None:
        self.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.sock.recv(65536)


NotifierFactory = Callable[..., Notifier]


@pytest.fixture
def path_listener() -> Iterator[Listener]:
    # pytest's tmp_path can exceed the 108-byte AF_UNIX path limit; use a short directory.
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory:
        path = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            yield Listener(sock, path)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"storyline-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield Listener(sock, "@" + name)


@pytest.fixture
def opened() -> Iterator[list[Notifier]]:
    # Notifiers keep their socket open; close them so no ResourceWarning reaches pytest.
    notifiers: list[Notifier] = []
    yield notifiers
    for notifier in notifiers:
        notifier.close()


@pytest.fixture
def notifier_for(opened: list[Notifier]) -> NotifierFactory:
    def make(listener: Listener, **extra: str) -> Notifier:
        env = {"NOTIFY_SOCKET": listener.notify_socket, **extra}
        opened.append(Notifier.from_environment(env))
        return opened[-1]

    return make


def test_ready_with_status_is_one_datagram(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier = notifier_for(path_listener)
    notifier.ready("migrations done, 3 sources")
    assert path_listener.receive() == b"READY=1\nSTATUS=migrations done, 3 sources"
    path_listener.assert_nothing_more()


def test_ready_without_status(path_listener: Listener, notifier_for: NotifierFactory) -> None:
    notifier_for(path_listener).ready()
    assert path_listener.receive() == b"READY=1"


def test_status_watchdog_and_stopping(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier = notifier_for(path_listener)
    notifier.status("polling 12 sources")
    notifier.watchdog()
    notifier.stopping("finishing batch")
    notifier.stopping()
    assert path_listener.receive() == b"STATUS=polling 12 sources"
    assert path_listener.receive() == b"WATCHDOG=1"
    assert path_listener.receive() == b"STOPPING=1\nSTATUS=finishing batch"
    assert path_listener.receive() == b"STOPPING=1"


def test_status_with_newline_cannot_inject_a_field(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier_for(path_listener).status("bad\nREADY=1")
    assert path_listener.receive() == b"STATUS=bad READY=1"


def test_reloading_carries_the_injected_monotonic_time(
    path_listener: Listener, opened: list[Notifier]
) -> None:
    notifier = Notifier(path_listener.notify_socket, monotonic_usec=lambda: 123456789)
    opened.append(notifier)
    notifier.reloading()
    assert path_listener.receive() == b"RELOADING=1\nMONOTONIC_USEC=123456789"


def test_reloading_uses_clock_monotonic_by_default(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier_for(path_listener).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = path_listener.receive().decode().split("\n")
    assert reloading == "RELOADING=1"
    key, value = monotonic.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_extend_timeout_in_microseconds(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier_for(path_listener).extend_timeout(90)
    assert path_listener.receive() == b"EXTEND_TIMEOUT_USEC=90000000"


def test_abstract_namespace_socket(
    abstract_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier = notifier_for(abstract_listener)
    assert notifier.enabled
    notifier.ready("up")
    notifier.watchdog()
    assert abstract_listener.receive() == b"READY=1\nSTATUS=up"
    assert abstract_listener.receive() == b"WATCHDOG=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    notifier.reloading()
    notifier.send("FOO=1")


def test_unsupported_socket_kind_disables_notifications() -> None:
    with capture_logs() as logs:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert [log["event"] for log in logs] == ["notify_socket_unsupported"]


def test_watchdog_interval_is_half_of_watchdog_usec(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier = notifier_for(path_listener, WATCHDOG_USEC="30000000")
    assert notifier.watchdog_interval == 15.0


def test_watchdog_pid_of_this_process_keeps_the_watchdog(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier = notifier_for(path_listener, WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid()))
    assert notifier.watchdog_interval == 15.0


def test_watchdog_pid_of_another_process_disables_the_watchdog(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    other_pid = str(os.getpid() + 1)
    notifier = notifier_for(path_listener, WATCHDOG_USEC="30000000", WATCHDOG_PID=other_pid)
    assert notifier.enabled
    assert notifier.watchdog_interval is None


@pytest.mark.parametrize("usec", ["", "0", "-5", "thirty"])
def test_missing_or_invalid_watchdog_usec_means_no_watchdog(
    path_listener: Listener, notifier_for: NotifierFactory, usec: str
) -> None:
    assert notifier_for(path_listener, WATCHDOG_USEC=usec).watchdog_interval is None


def test_vanished_socket_warns_once_and_never_raises(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    notifier = notifier_for(path_listener)
    notifier.ready()
    assert path_listener.receive() == b"READY=1"
    path_listener.sock.close()
    os.unlink(path_listener.notify_socket)
    with capture_logs() as logs:
        notifier.watchdog()
        notifier.stopping()
    assert [(log["event"], log["log_level"]) for log in logs] == [("notify_send_failed", "warning")]


class FakePinger:
    def __init__(self) -> None:
        self.pings = 0

    def __call__(self) -> None:
        self.pings += 1


def test_gate_pings_at_most_once_per_interval_while_the_loop_beats() -> None:
    pinger = FakePinger()
    gate = WatchdogGate(pinger, interval=15.0)
    gate.beat()
    assert gate.maybe_ping(100.0)
    gate.beat()
    assert not gate.maybe_ping(110.0)
    assert gate.maybe_ping(115.0)
    assert pinger.pings == 2


def test_gate_stops_pinging_when_the_loop_does_not_beat() -> None:
    pinger = FakePinger()
    gate = WatchdogGate(pinger, interval=15.0)
    gate.beat()
    assert gate.maybe_ping(0.0)
    # The loop hangs: time passes, no beat, so systemd's watchdog is left to fire.
    assert not any(gate.maybe_ping(now) for now in (15.0, 30.0, 45.0, 60.0))
    assert pinger.pings == 1
    gate.beat()
    assert gate.maybe_ping(61.0)
    assert pinger.pings == 2


def test_gate_without_watchdog_never_pings() -> None:
    pinger = FakePinger()
    gate = WatchdogGate(pinger, interval=None)
    gate.beat()
    assert not gate.maybe_ping(1000.0)
    assert pinger.pings == 0


def test_gate_for_notifier_sends_real_watchdog_datagrams(
    path_listener: Listener, notifier_for: NotifierFactory
) -> None:
    gate = WatchdogGate.for_notifier(notifier_for(path_listener, WATCHDOG_USEC="2000000"))
    gate.beat()
    gate.maybe_ping(10.0)
    gate.maybe_ping(20.0)  # no beat since the last ping
    assert path_listener.receive() == b"WATCHDOG=1"
    path_listener.assert_nothing_more()
