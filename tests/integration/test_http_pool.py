"""HttpClient's connection-pool lanes, the remembered address check and cookies, against
a real HTTP server on 127.0.0.1 (nothing else is contacted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from adapters.http import HttpClient, HttpSettings, PermanentFetchError
from tests.httpserver import serving
from tests.integration.test_http_client import (
    FAKE_DNS,
    LocalServer,
    LoopbackOnly,
    fake_resolver,
    server,  # noqa: F401 -- fixture
    transport,  # noqa: F401 -- fixture
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _PoolServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.ports.add(self.client_address[1])
            srv.cookies.append(self.headers.get("Cookie"))
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        if self.path == "/hold":
            time.sleep(0.2)
        elif self.path.startswith("/sleep/"):  # /sleep/<milliseconds>
            time.sleep(int(self.path.rsplit("/", 1)[1]) / 1000)
        with srv.lock:
            srv.in_flight -= 1
        self.send_response(200)
        if self.path == "/set-cookie":
            self.send_header("Set-Cookie", "session=abc; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _PoolServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.ports: set[int] = set()  # one client port per connection
        self.cookies: list[str | None] = []
        self.in_flight = self.max_in_flight = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def pool_server() -> Iterator[_PoolServer]:
    with serving(_PoolServer()) as srv:
        yield srv


def _lanes_client(**overrides: Any) -> HttpClient:
    """The real lanes (no injected transport); the guard off, since it is loopback."""
    options: dict[str, Any] = {"allow_private_networks": True, "per_host_min_delay": 0.0}
    options.update(overrides)
    return HttpClient(HttpSettings(**options))


def _concurrently(*calls: Callable[[], object]) -> None:
    """Run each call in a thread of its own, all at once; wait up to 10 s for each."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)


def test_open_connections_never_exceed_max_connections(pool_server: _PoolServer) -> None:
    with _lanes_client(per_host_concurrency=8, max_connections=3) as client:
        _concurrently(*[lambda: client.fetch(pool_server.base + "/hold")] * 8)
    assert len(pool_server.cookies) == 8  # every request was answered
    assert pool_server.max_in_flight <= 3
    assert len(pool_server.ports) <= 3


def test_a_request_takes_whichever_lane_frees_first(pool_server: _PoolServer) -> None:
    """Two lanes of one connection: A holds one for 2.5 s, B the other for 0.3 s. C,
    arriving while both are busy, must get B's lane when it frees, not queue behind A
    until its 3 s deadline."""
    port = pool_server.server_address[1]
    outcome: dict[str, str] = {}

    def fetch(name: str, url: str, delay: float) -> None:
        time.sleep(delay)
        try:
            client.fetch(url)
            outcome[name] = "ok"
        except Exception as exc:  # the outcome is the assertion
            outcome[name] = f"{type(exc).__name__}: {exc}"

    with _lanes_client(max_connections=2, deadline=3.0, timeout_read=3.0) as client:
        _concurrently(
            lambda: fetch("A", f"http://localhost:{port}/sleep/2500", 0),
            lambda: fetch("B", f"http://127.0.0.1:{port}/sleep/300", 0.05),
            lambda: fetch("C", f"http://127.0.0.1:{port}/sleep/800", 0.1),
        )
    assert outcome == {"A": "ok", "B": "ok", "C": "ok"}
    assert pool_server.max_in_flight <= 2


def test_one_host_reuses_its_connection(pool_server: _PoolServer) -> None:
    with _lanes_client(per_host_concurrency=2) as client:
        for _ in range(20):
            assert client.fetch(pool_server.base + "/").body == b"ok"
    assert len(pool_server.ports) == 1


def test_a_host_uses_no_more_connections_than_slots(pool_server: _PoolServer) -> None:
    with _lanes_client(per_host_concurrency=2, max_connections=64) as client:
        for _ in range(3):
            _concurrently(*[lambda: client.fetch(pool_server.base + "/hold")] * 6)
    assert pool_server.max_in_flight <= 2
    assert len(pool_server.ports) <= 2  # each (host, slot) keeps to its lane


def test_cookies_kept_between_requests(pool_server: _PoolServer) -> None:
    with _lanes_client() as client:
        client.fetch(pool_server.base + "/")
        client.fetch(pool_server.base + "/set-cookie")
        client.fetch(pool_server.base + "/")
    assert pool_server.cookies == [None, None, "session=abc"]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _CountingResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        return fake_resolver(host, port, *args, **kwargs)


def _guarded(loopback: LoopbackOnly, resolver: _CountingResolver, clock: _Clock) -> HttpClient:
    settings = HttpSettings(per_host_min_delay=0.0, allowed_networks=("127.0.0.1/32",))
    return HttpClient(settings, transport=loopback, resolver=resolver, clock=clock)


def test_passed_address_check_remembered_for_a_short_time(
    server: LocalServer,  # noqa: F811
    transport: LoopbackOnly,  # noqa: F811
) -> None:
    resolver, clock = _CountingResolver(), _Clock()
    with _guarded(transport, resolver, clock) as client:
        client.fetch(server.base + "/feed")
        client.fetch(server.base + "/feed")
        assert resolver.asked == ["127.0.0.1"]
        clock.now += 31.0
        client.fetch(server.base + "/feed")
        assert resolver.asked == ["127.0.0.1", "127.0.0.1"]


def test_refused_address_never_remembered_and_every_hop_checked(
    server: LocalServer,  # noqa: F811
    transport: LoopbackOnly,  # noqa: F811
) -> None:
    assert FAKE_DNS["evil.test"] == "10.0.0.1"
    resolver, clock = _CountingResolver(), _Clock()
    with _guarded(transport, resolver, clock) as client:
        client.fetch(server.base + "/feed")  # 127.0.0.1 passes and is remembered
        for _ in range(2):
            with pytest.raises(PermanentFetchError, match=r"refused address 10\.0\.0\.1"):
                client.fetch(server.base + "/redirect/evil")  # the hop is still checked
    assert resolver.asked == ["127.0.0.1", "evil.test", "evil.test"]
    assert set(transport.hosts) == {"127.0.0.1"}  # evil.test was never connected to


def test_lane_memory_stays_bounded_with_many_hosts() -> None:
    # a daemon polling tens of thousands of hosts must not remember a lane for each
    from types import SimpleNamespace

    from adapters import http

    lanes = http._Lanes(HttpSettings(max_connections=8), None)
    try:
        for number in range(http._LANE_MEMORY + 500):
            slot: Any = SimpleNamespace(host=f"host{number}.test", index=0)
            lane = lanes.take(slot, timeout=1.0)
            assert lane is not None
            lanes.give_back(lane)
        assert len(lanes._last) == http._LANE_MEMORY
        recent: Any = SimpleNamespace(host=f"host{http._LANE_MEMORY + 499}.test", index=0)
        assert (recent.host, 0) in lanes._last and ("host0.test", 0) not in lanes._last
    finally:
        lanes.close()
