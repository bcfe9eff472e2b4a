"""HttpClient against a real HTTP server on 127.0.0.1. Nothing else is ever contacted:
the transport refuses any other host and the resolver is a fake that knows three names."""

from __future__ import annotations

import base64
import gzip
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.errors import AdapterError
from adapters.http import (
    FetchError,
    Gone,
    HttpClient,
    HttpSettings,
    NotFound,
    PermanentFetchError,
    TransientFetchError,
    is_blocked_address,
    parse_retry_after,
)
from adapters.http1 import Http1Transport, Reply
from tests.httpserver import serving
from tests.integration.test_http1 import scripted

FEED = b"<rss version='2.0'><channel><title>t</title></channel></rss>"
MB = 1024 * 1024
FAKE_DNS = {"127.0.0.1": "127.0.0.1", "evil.test": "10.0.0.1", "metadata.test": "169.254.169.254"}


def _compressed_zeros(size: int, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(MB)
    return b"".join(compressor.compress(chunk) for _ in range(size // MB)) + compressor.flush()


GZIP_BOMB = _compressed_zeros(50 * MB, 16 + zlib.MAX_WBITS)  # ~50 KB on the wire
DEFLATE_BOMB = _compressed_zeros(50 * MB, zlib.MAX_WBITS)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.record(self)
        name, _, arg = self.path.lstrip("/").partition("/")
        route = getattr(self, f"route_{name.replace('-', '_')}", None)
        try:
            if route is None:
                self.reply(404, b"no such route")
            else:
                route(arg)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as it should

    def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_feed(self, arg: str) -> None:
        if self.headers.get("If-None-Match") == '"v1"':
            self.reply(304, ETag='"v1"')
        else:
            self.reply(200, FEED, ETag='"v1"', Last_Modified="Mon, 02 Jun 2025 10:00:00 GMT")

    def route_status(self, arg: str) -> None:
        retry_after = {"429": "120", "503": "Wed, 21 Oct 2015 07:28:00 GMT"}.get(arg)
        headers = {"Retry_After": retry_after} if retry_after else {}
        self.reply(int(arg), b"status body", **headers)

    def route_slow(self, arg: str) -> None:  # 1 byte every 0.2 s
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.2)

    def route_silent(self, arg: str) -> None:  # headers, then nothing
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.flush()
        time.sleep(3)
        self.close_connection = True

    def route_bomb(self, arg: str) -> None:
        body, encoding = (GZIP_BOMB, "gzip") if arg == "gzip" else (DEFLATE_BOMB, "deflate")
        self.reply(200, body, Content_Encoding=encoding)

    def route_gzipped(self, arg: str) -> None:
        self.reply(200, gzip.compress(FEED), Content_Encoding="gzip")

    def route_big(self, arg: str) -> None:
        if arg == "declared":
            self.reply(200, bytes(2 * MB))
            return
        self.send_response(200)  # no Content-Length: the body ends when the connection does
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(4):
            self.wfile.write(bytes(MB // 2))
        self.close_connection = True

    def route_hops(self, arg: str) -> None:
        left = int(arg)
        if left == 0:
            self.reply(200, FEED)
        else:
            self.reply(302, Location=f"/hops/{left - 1}")

    def route_loop(self, arg: str) -> None:
        self.reply(302, Location="/loop/b" if arg == "a" else "/loop/a")

    def route_redirect(self, arg: str) -> None:
        port = self.server.server_address[1]
        targets = {
            "file": "file:///etc/passwd",
            "evil": f"http://evil.test:{port}/feed",
            "metadata": "http://metadata.test/latest/meta-data/",
        }
        self.reply(302, Location=targets[arg])

    def route_headers(self, arg: str) -> None:
        self.send_response(200)
        self.send_header("Link", "<a>; rel=prev")
        self.send_header("Link", "<b>; rel=next")
        # http.server writes header values as Latin-1: these are the UTF-8 bytes of "café"
        self.send_header("X-Title", "café".encode().decode("latin-1"))
        self.send_header("X-Legacy", "caf\xe9")  # Latin-1 itself: not UTF-8
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def route_hold(self, arg: str) -> None:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        time.sleep(0.3)
        with self.server.lock:
            self.server.in_flight -= 1
        self.reply(200, FEED)


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is fine
            super().handle_error(request, client_address)

    def record(self, handler: Handler) -> None:
        with self.lock:
            self.requests.append((handler.path, dict(handler.headers.items())))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class LoopbackOnly(Http1Transport):
    """The real transport, refusing before any I/O every host but 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def send(self, method: str, url: httpx.URL, *args: Any, **kwargs: Any) -> Reply:
        self.hosts.append(url.host)
        assert url.host == "127.0.0.1", f"test tried to reach {url}"
        return super().send(method, url, *args, **kwargs)


def fake_resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    if host not in FAKE_DNS:
        raise OSError(f"fake resolver does not know {host}")
    return [(2, 1, 6, "", (FAKE_DNS[host], port))]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with serving(LocalServer()) as srv:
        yield srv


@pytest.fixture
def transport() -> LoopbackOnly:
    return LoopbackOnly()


MakeClient = Callable[..., HttpClient]


@pytest.fixture
def make_client(transport: LoopbackOnly) -> Iterator[MakeClient]:
    """Guard on, 127.0.0.1 allow-listed as a LAN source would be, small limits."""
    clients: list[HttpClient] = []

    def make(**overrides: Any) -> HttpClient:
        options: dict[str, Any] = {
            "deadline": 2.0,
            "timeout_read": 2.0,
            "max_body_bytes": MB,
            "per_host_min_delay": 0.0,
            "allowed_networks": ("127.0.0.1/32",),
        }
        options.update(overrides)
        extra = {k: options.pop(k) for k in ("sleep", "clock") if k in options}
        client = HttpClient(
            HttpSettings(**options), transport=transport, resolver=fake_resolver, **extra
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_200_returns_body_and_validators(server: LocalServer, make_client: MakeClient) -> None:
    result = make_client().fetch(server.base + "/feed")
    assert result.status == 200
    assert result.body == FEED
    assert result.etag == '"v1"'
    assert result.last_modified == "Mon, 02 Jun 2025 10:00:00 GMT"
    assert result.headers["etag"] == '"v1"'
    assert not result.not_modified
    assert result.redirects == ()
    assert result.url == server.base + "/feed"


def test_conditional_get_answered_304(server: LocalServer, make_client: MakeClient) -> None:
    result = make_client().fetch(
        server.base + "/feed", etag='"v1"', last_modified="Mon, 02 Jun 2025 10:00:00 GMT"
    )
    assert result.not_modified and result.status == 304 and result.body == b""
    sent = server.requests[-1][1]
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Mon, 02 Jun 2025 10:00:00 GMT"


def test_user_agent_and_accept_encoding_sent(server: LocalServer, make_client: MakeClient) -> None:
    client = make_client(user_agent="storyline/9.9 (+https://github.com/storyline/storyline)")
    client.fetch(server.base + "/feed")
    sent = server.requests[-1][1]
    assert sent["User-Agent"] == "storyline/9.9 (+https://github.com/storyline/storyline)"
    assert sent["Accept-Encoding"] == "gzip, deflate"
    assert HttpSettings().user_agent.startswith("storyline/")


def test_credentials_in_the_url_are_sent_as_basic_auth_and_not_in_the_target(
    server: LocalServer, make_client: MakeClient
) -> None:
    """A protected feed named as https://user:secret@host/feed keeps working."""
    base = server.base.replace("http://", "http://reader:s%40cret@")
    assert make_client().fetch(base + "/feed").status == 200
    path, sent = server.requests[-1][0], server.requests[-1][1]
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"reader:s@cret").decode()
    assert "reader" not in path and "reader" not in sent.get("Host", "")
    make_client().fetch(server.base + "/feed")
    assert "Authorization" not in server.requests[-1][1]


def test_gzip_body_is_decompressed(server: LocalServer, make_client: MakeClient) -> None:
    assert make_client().fetch(server.base + "/gzipped").body == FEED


@pytest.mark.parametrize(("status", "error"), [(404, NotFound), (410, Gone), (403, None)])
def test_client_errors_are_permanent(
    server: LocalServer, make_client: MakeClient, status: int, error: type[FetchError] | None
) -> None:
    with pytest.raises(PermanentFetchError) as info:
        make_client().fetch(f"{server.base}/status/{status}")
    assert info.value.status == status
    assert type(info.value) is (error or PermanentFetchError)
    assert f"HTTP {status} at {server.base}/status/{status}" in str(info.value)


def test_429_carries_retry_after(server: LocalServer, make_client: MakeClient) -> None:
    with pytest.raises(TransientFetchError) as info:
        make_client().fetch(server.base + "/status/429")
    assert info.value.status == 429
    assert info.value.retry_after == 120


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(
    server: LocalServer, make_client: MakeClient, status: int
) -> None:
    with pytest.raises(TransientFetchError) as info:
        make_client().fetch(f"{server.base}/status/{status}")
    assert info.value.status == status
    assert info.value.retry_after == (0.0 if status == 503 else None)  # that date is past


def test_retry_after_parsing() -> None:
    now = datetime(2025, 6, 2, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Mon, 02 Jun 2025 10:01:30 GMT", now) == 90
    assert parse_retry_after("Mon, 02 Jun 2025 09:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_trickling_server_fails_at_the_deadline(
    server: LocalServer, make_client: MakeClient
) -> None:
    started = time.monotonic()
    with pytest.raises(TransientFetchError, match="deadline of 1 s exceeded"):
        make_client(deadline=1.0, timeout_read=5.0).fetch(server.base + "/slow")
    assert time.monotonic() - started < 2.0


def test_silent_server_fails_at_the_deadline(server: LocalServer, make_client: MakeClient) -> None:
    started = time.monotonic()
    with pytest.raises(TransientFetchError, match="timed out"):
        make_client(deadline=1.0, timeout_read=5.0).fetch(server.base + "/silent")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decompression_bomb_refused_with_bounded_memory(
    server: LocalServer, make_client: MakeClient, encoding: str
) -> None:
    client = make_client()
    tracemalloc.start()
    try:
        with pytest.raises(PermanentFetchError) as info:
            client.fetch(f"{server.base}/bomb/{encoding}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"body exceeds {MB} bytes after decompression at {server.base}" in str(info.value)
    assert peak < 8 * MB  # 50 MB inflated would be far above this


@pytest.mark.parametrize("variant", ["declared", "streamed"])
def test_plain_body_over_cap_refused(
    server: LocalServer, make_client: MakeClient, variant: str
) -> None:
    with pytest.raises(PermanentFetchError, match=f"exceeds {MB} bytes"):
        make_client().fetch(f"{server.base}/big/{variant}")


def test_redirects_followed_and_recorded(server: LocalServer, make_client: MakeClient) -> None:
    result = make_client().fetch(server.base + "/hops/5")  # exactly the limit
    assert result.body == FEED
    assert result.url == server.base + "/hops/0"
    assert result.redirects == tuple(f"{server.base}/hops/{n}" for n in (4, 3, 2, 1, 0))


def test_more_than_five_redirects_refused(server: LocalServer, make_client: MakeClient) -> None:
    with pytest.raises(PermanentFetchError, match="too many redirects"):
        make_client().fetch(server.base + "/hops/6")


def test_redirect_loop_refused(server: LocalServer, make_client: MakeClient) -> None:
    with pytest.raises(PermanentFetchError, match="redirect loop"):
        make_client().fetch(server.base + "/loop/a")
    assert len(server.requests) == 2


def test_redirect_to_file_url_refused(server: LocalServer, make_client: MakeClient) -> None:
    with pytest.raises(PermanentFetchError, match="refused URL scheme 'file'"):
        make_client().fetch(server.base + "/redirect/file")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "ftp://x/f", "data:,x"])
def test_non_http_urls_refused(make_client: MakeClient, transport: LoopbackOnly, url: str) -> None:
    with pytest.raises(PermanentFetchError):
        make_client().fetch(url)
    assert transport.hosts == []


@pytest.mark.parametrize(("route", "address"), [("evil", "10.0.0.1"), ("metadata", "169.254.")])
def test_redirect_to_private_address_refused_before_connecting(
    server: LocalServer, make_client: MakeClient, transport: LoopbackOnly, route: str, address: str
) -> None:
    with pytest.raises(PermanentFetchError, match=f"refused address {re.escape(address)}"):
        make_client().fetch(f"{server.base}/redirect/{route}")
    assert transport.hosts == ["127.0.0.1"]  # the evil host was never asked


def test_loopback_refused_by_default_guard(server: LocalServer, transport: LoopbackOnly) -> None:
    client = HttpClient(HttpSettings(), transport=transport)  # the real getaddrinfo
    with client, pytest.raises(PermanentFetchError, match=r"refused address 127\.0\.0\.1"):
        client.fetch(server.base + "/feed")
    assert server.requests == [] and transport.hosts == []


def test_loopback_allowed_when_private_networks_allowed(
    server: LocalServer, transport: LoopbackOnly
) -> None:
    with HttpClient(HttpSettings(allow_private_networks=True), transport=transport) as client:
        assert client.fetch(server.base + "/feed").body == FEED


class Rebinding:
    """A resolver for names no real DNS knows: each call gives the next of ``answers``
    (the last one repeats), as a DNS rebinding server would."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers, self.calls = list(answers), 0

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [(2, 1, 6, "", (address, port)) for address in answer]


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses connections were opened to. A safety net for tests that use the
    real network backend: anything but 127.0.0.0/8 fails the test, never dials out."""
    opened: list[str] = []
    real = socket.create_connection

    def loopback_only(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address[0])
        assert address[0].startswith("127."), f"test tried to connect to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)
    return opened


def _guarded_client(resolver: Rebinding, deadline: float = 2.0, **settings: Any) -> HttpClient:
    """The real pool and network backend (no test transport), guard on."""
    return HttpClient(HttpSettings(deadline=deadline, **settings), resolver=resolver)


def test_dns_rebinding_refused_at_connect_time(server: LocalServer, dialled: list[str]) -> None:
    # the name passes the check as a public address, then rebinds to loopback: the
    # connection goes to an address checked at connect time, so it is refused there
    resolver = Rebinding(["8.8.8.8"], ["127.0.0.1"])
    port = server.server_address[1]
    refused = pytest.raises(PermanentFetchError, match=r"refused address 127\.0\.0\.1")
    with _guarded_client(resolver) as client, refused:
        client.fetch(f"http://rebind.test:{port}/feed")
    assert resolver.calls == 2 and server.requests == [] and dialled == []


def test_connects_to_the_checked_address(server: LocalServer, dialled: list[str]) -> None:
    # "lan.test" exists only in our resolver: the request can reach the server only if
    # the connection goes to the address that was checked, not to a second lookup
    resolver = Rebinding(["127.0.0.1"])
    port = server.server_address[1]
    with _guarded_client(resolver, allowed_networks=("127.0.0.1/32",)) as client:
        assert client.fetch(f"http://lan.test:{port}/feed").body == FEED
    (path, headers), *_ = server.requests
    assert path == "/feed" and headers["Host"] == f"lan.test:{port}"
    assert dialled == ["127.0.0.1"]


def test_next_checked_address_tried_when_one_refuses(
    server: LocalServer, dialled: list[str]
) -> None:
    resolver = Rebinding(["127.0.0.2", "127.0.0.1"])  # nothing listens on 127.0.0.2
    port = server.server_address[1]
    with _guarded_client(resolver, allowed_networks=("127.0.0.0/8",)) as client:
        assert client.fetch(f"http://two.test:{port}/feed").body == FEED
    assert dialled == ["127.0.0.2", "127.0.0.1"]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """HTTPS on 127.0.0.1 with a self-signed certificate for "lan.test"; yields its port,
    the certificate (to trust) and the server names clients sent (SNI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    cert, key = tmp_path / "lan.crt", tmp_path / "lan.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=lan.test",
         "-addext", "subjectAltName=DNS:lan.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def sni(_sock: Any, name: str | None, _ctx: Any) -> None:
        names.append(name or "")

    context.sni_callback = sni
    srv = LocalServer()
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    with serving(srv):
        yield srv.server_address[1], cert, names


def test_tls_to_the_checked_address_verifies_the_name(
    tls_server: tuple[int, Path, list[str]], dialled: list[str]
) -> None:
    port, cert, names = tls_server
    resolver = Rebinding(["127.0.0.1"])
    settings = {"allowed_networks": ("127.0.0.1/32",), "deadline": 20.0}
    with _guarded_client(resolver, **settings) as client:
        with pytest.raises(TransientFetchError, match="CERTIFICATE_VERIFY_FAILED"):
            client.fetch(f"https://lan.test:{port}/feed")  # not in the system's CAs
        trusted = ssl.create_default_context(cafile=str(cert))
        for lane in client._lanes.transports:  # the test's CA, in every lane's pool
            lane.ssl_context = trusted  # type: ignore[attr-defined]
        assert client.fetch(f"https://lan.test:{port}/feed").body == FEED
        with pytest.raises(TransientFetchError, match="Hostname mismatch"):
            client.fetch(f"https://other.test:{port}/feed")  # same address, wrong name
    assert set(names) == {"lan.test", "other.test"}  # SNI: the name, never the address


class _Redirecting(Http1Transport):
    """Answers every request with a redirect to ``location``, without any I/O."""

    def __init__(self, location: bytes) -> None:
        super().__init__()
        self.location = location
        self.asked: list[str] = []

    def send(self, method: str, url: httpx.URL, *args: Any, **kwargs: Any) -> Reply:
        self.asked.append(str(url))
        return Reply(301, [(b"Location", self.location)], _NoBody())


class _NoBody:
    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


def test_https_to_http_downgrade_refused() -> None:
    transport = _Redirecting(b"http://feeds.test/feed")
    settings = HttpSettings(allow_private_networks=True)
    client = HttpClient(settings, transport=transport)
    with client, pytest.raises(PermanentFetchError, match="HTTPS to HTTP downgrade"):
        client.fetch("https://feeds.test/feed")
    assert transport.asked == ["https://feeds.test/feed"]  # the HTTP URL was never asked


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fd12:3456::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("93.184.215.14", False),
        ("2606:4700::6810:84e5", False),
    ],
)
def test_blocked_addresses(address: str, blocked: bool) -> None:
    assert is_blocked_address(address) is blocked


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_per_host_min_delay_requested(server: LocalServer, make_client: MakeClient) -> None:
    fake = FakeTime()
    client = make_client(per_host_min_delay=5.0, sleep=fake.sleep, clock=fake.clock)
    client.fetch(server.base + "/feed")
    assert fake.sleeps == []
    client.fetch(server.base + "/feed")
    assert fake.sleeps == [5.0]
    fake.now += 2.0
    client.fetch(server.base + "/feed")
    assert fake.sleeps == [5.0, 3.0]


def test_per_host_concurrency_limit(server: LocalServer, make_client: MakeClient) -> None:
    client = make_client(per_host_concurrency=1)
    threads = [threading.Thread(target=client.fetch, args=(server.base + "/hold",)) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(server.requests) == 2
    assert server.max_in_flight == 1


def test_errors_share_one_tree() -> None:
    assert issubclass(NotFound, PermanentFetchError) and issubclass(Gone, PermanentFetchError)
    assert issubclass(TransientFetchError, FetchError) and issubclass(FetchError, AdapterError)


def test_repeated_headers_are_joined_and_values_decoded(
    server: LocalServer, make_client: MakeClient
) -> None:
    headers = make_client().fetch(server.base + "/headers").headers
    assert headers["link"] == "<a>; rel=prev, <b>; rel=next"  # as httpx joins them
    assert (headers["x-title"], headers["x-legacy"]) == ("café", "café")
    assert all(name == name.lower() for name in headers)


@pytest.mark.parametrize("etag", ['"v1"\r\nX-Injected: 1', '"v1"\nX-Injected: 1', '"v1"\r'])
def test_a_stored_validator_that_is_no_header_value_is_not_sent(
    server: LocalServer, make_client: MakeClient, etag: str
) -> None:
    """An ETag as stored could hold a line break: it is left out, and the GET is an
    ordinary one, never a request with an added header."""
    result = make_client().fetch(server.base + "/feed", etag=etag, last_modified="x\r\ny: z")
    assert (result.status, result.body) == (200, FEED)
    _, sent = server.requests[-1]
    assert not {"If-None-Match", "If-Modified-Since", "X-Injected", "y"} & set(sent)


def _once(*headers: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\nok"
    )


@pytest.mark.parametrize("etag", ['"café"'.encode(), b'"caf\xe9"', '"☃"'.encode()])
def test_a_validator_is_sent_back_as_the_bytes_it_came_as(etag: bytes) -> None:
    """UTF-8 or Latin-1: the conditional GET repeats the server's own bytes."""
    settings = HttpSettings(allow_private_networks=True, deadline=2.0)
    with (
        scripted(lambda n, r: (_once(b"ETag: " + etag), False)) as server,
        HttpClient(settings) as client,
    ):
        first = client.fetch(server.url)
        client.fetch(server.url, etag=first.etag)
    assert b"\r\nIf-None-Match: " + etag + b"\r\n" in server.requests[1] + b"\r\n"


@pytest.mark.parametrize("cookie", ["a=€".encode(), "a=café".encode()])
def test_a_utf8_cookie_is_sent_back_as_it_came(cookie: bytes) -> None:
    """A cookie value beyond ASCII neither breaks the next fetch nor changes on the way
    back (UTF-8; a Latin-1 one would go back as UTF-8)."""
    settings = HttpSettings(allow_private_networks=True, deadline=2.0)
    with (
        scripted(lambda n, r: (_once(b"Set-Cookie: " + cookie), False)) as server,
        HttpClient(settings) as client,
    ):
        client.fetch(server.url)
        assert client.fetch(server.url).body == b"ok"
    assert b"\r\nCookie: " + cookie + b"\r\n" in server.requests[1] + b"\r\n"
