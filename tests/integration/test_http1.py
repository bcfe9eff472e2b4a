"""adapters/http1.py against a scripted server on 127.0.0.1: framing, keep-alive, stale
connections and malformed answers, byte for byte."""

from __future__ import annotations

import gzip
import math
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from adapters.http1 import MAX_HEAD_BYTES, Http1Transport

# what the server does with one request: bytes to send, and whether to close afterwards;
# and, optionally, bytes to send 50 ms later on the same connection (nobody asked for them)
Answer = tuple[bytes, bool] | tuple[bytes, bool, bytes]


class Scripted:
    """Answers the n-th request (over all connections) with ``script(n, request)``."""

    def __init__(self, script: Callable[[int, bytes], Answer]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/page"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                except OSError:
                    return
                request, _, buffer = buffer.partition(b"\r\n\r\n")
                with self._lock:
                    self.requests.append(request)
                    number = len(self.requests)
                reply, close, *later = self.script(number, request)
                try:
                    conn.sendall(reply)
                    if later:
                        time.sleep(0.05)
                        conn.sendall(later[0])
                except OSError:
                    return
                if close:
                    return

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(2)


@contextmanager
def scripted(script: Callable[[int, bytes], Answer]) -> Iterator[Scripted]:
    server = Scripted(script)
    try:
        yield server
    finally:
        server.stop()


TIMEOUT = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


def get(
    transport: Http1Transport, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, httpx.Headers]:
    request = httpx.Request("GET", url, headers=headers, extensions={"timeout": TIMEOUT})
    response = transport.handle_request(request)
    try:
        return response.status_code, b"".join(response.iter_raw()), response.headers
    finally:
        response.close()


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"Content-Length: {len(body)}", *headers))
    return f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body


def test_request_head_is_what_httpx_built() -> None:
    with scripted(lambda n, r: (ok(b"hi"), False)) as server, Http1Transport() as transport:
        answer = get(transport, server.url + "?a=1&b=%20", {"If-None-Match": '"v1"'})
        assert answer[:2] == (200, b"hi")
    lines = server.requests[0].split(b"\r\n")
    assert lines[0] == b"GET /page?a=1&b=%20 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b'If-None-Match: "v1"' in lines


def test_keep_alive_connection_reused() -> None:
    with scripted(lambda n, r: (ok(b"%d" % n), False)) as server, Http1Transport() as transport:
        bodies = [get(transport, server.url)[1] for _ in range(5)]
    assert bodies == [b"1", b"2", b"3", b"4", b"5"]
    assert server.connections == 1


def test_304_without_body_reuses_the_connection() -> None:
    answer = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n'
    with scripted(lambda n, r: (answer, False)) as server, Http1Transport() as transport:
        for _ in range(3):
            status, body, headers = get(transport, server.url, {"If-None-Match": '"v1"'})
            assert (status, body, headers["etag"]) == (304, b"", '"v1"')
    assert server.connections == 1


def test_chunked_body_in_pieces() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
    )
    with scripted(lambda n, r: (chunked, False)) as server, Http1Transport() as transport:
        assert get(transport, server.url)[1] == b"hello world"
        assert get(transport, server.url)[1] == b"hello world"
    assert server.connections == 1


def test_informational_answers_skipped() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    answer = early + ok(b"final", "X-Real: 1")
    with scripted(lambda n, r: (answer, False)) as server, Http1Transport() as transport:
        status, body, headers = get(transport, server.url)
        assert (status, body, headers.get("x-real"), headers.get("link")) == (
            200, b"final", "1", None)  # fmt: skip
        assert get(transport, server.url)[:2] == (200, b"final")  # still in step
    assert server.connections == 1


def test_body_ending_with_the_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 300_000
    with scripted(lambda n, r: (answer, True)) as server, Http1Transport() as transport:
        assert get(transport, server.url)[1] == b"x" * 300_000
        assert transport.idle_connections() == 0  # that connection is over
        assert get(transport, server.url)[1] == b"x" * 300_000
    assert server.connections == 2


def test_connection_close_and_http_1_0_not_kept() -> None:
    replies = {1: (ok(b"a", "Connection: close"), True), 2: (b"HTTP/1.0 200 OK\r\n"
               b"Content-Length: 1\r\n\r\nb", True), 3: (ok(b"c"), False)}  # fmt: skip
    with scripted(lambda n, r: replies[n]) as server, Http1Transport() as transport:
        assert [get(transport, server.url)[1] for _ in range(3)] == [b"a", b"b", b"c"]
    assert server.connections == 3


def test_content_encoding_left_to_the_caller() -> None:
    packed = gzip.compress(b"feed")
    answer = ok(packed, "Content-Encoding: gzip")
    with scripted(lambda n, r: (answer, False)) as server, Http1Transport() as transport:
        assert get(transport, server.url)[1] == packed


@pytest.mark.parametrize("look_after", [1.0, 0.0])  # not looked at / looked at first
def test_stale_kept_alive_connection_is_replaced(look_after: float) -> None:
    # the server answers, then closes the connection it had let the client keep: the
    # next request must not fail for it
    transport = Http1Transport(look_after=look_after)
    with scripted(lambda n, r: (ok(b"%d" % n), True)) as server, transport:
        assert get(transport, server.url)[1] == b"1"
        time.sleep(0.1)  # the close has come in
        assert get(transport, server.url)[1] == b"2"
    assert server.connections == 2


@pytest.mark.parametrize("look_after", [1.0, 0.0])
def test_stray_bytes_after_an_answer_are_never_read_as_the_next_answer(
    look_after: float,
) -> None:
    # the server answers, then sends bytes nobody asked for on the kept-alive connection
    def script(n: int, request: bytes) -> Answer:
        if n == 1:
            return ok(b"first"), False, b"\x00\x01 not an answer\r\n\r\n"
        return ok(b"%d" % n), False

    transport = Http1Transport(look_after=look_after)
    with scripted(script) as server, transport:
        assert get(transport, server.url)[1] == b"first"
        time.sleep(0.2)  # the stray bytes have come in
        status, body, _ = get(transport, server.url)
        # the answer to the request the server took last, on a new connection
        assert (status, body) == (200, b"%d" % len(server.requests))
        assert server.connections == 2
        if look_after == 0:  # seen before anything was sent on it
            assert len(server.requests) == 2


def test_a_whole_unasked_answer_on_an_idle_connection_is_not_taken_for_the_next() -> None:
    # the server answers request 1, then sends a second, complete answer nobody asked
    # for: a connection idle past look_after is polled before reuse, and dropped
    def script(n: int, request: bytes) -> Answer:
        return (ok(b"first"), False, ok(b"STRAY")) if n == 1 else (ok(b"%d" % n), False)

    with scripted(script) as server, Http1Transport() as transport:
        assert get(transport, server.url)[1] == b"first"
        time.sleep(0.2)  # the unasked answer has come in
        assert get(transport, server.url)[1] == b"2"
    assert server.connections == 2


def test_a_408_on_a_reused_connection_is_sent_again_on_a_new_one() -> None:
    # a server closing an idle connection may say 408 first; on a reused connection
    # that answer is the server's, not an answer to this request
    timeout = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    def script(n: int, request: bytes) -> Answer:
        return (timeout, True) if n == 2 else (ok(b"%d" % n), False)

    with scripted(script) as server, Http1Transport(look_after=1.0) as transport:
        assert get(transport, server.url)[1] == b"1"
        assert get(transport, server.url)[:2] == (200, b"3")
        assert server.connections == 2
    with scripted(lambda n, r: (timeout, True)) as server, Http1Transport() as transport:
        assert get(transport, server.url)[0] == 408  # on a new connection: the answer
    assert len(server.requests) == 1


def test_reset_before_an_answer_on_a_reused_connection_is_retried_once() -> None:
    calls = {"n": 0}

    def script(n: int, request: bytes) -> Answer:
        calls["n"] += 1
        if n == 2:
            return b"", True  # took the request and hung up without a word
        return ok(b"%d" % n), False

    with scripted(script) as server, Http1Transport() as transport:
        assert get(transport, server.url)[1] == b"1"
        assert get(transport, server.url)[1] == b"3"  # sent again on a new connection
    assert server.connections == 2


def test_no_answer_on_a_new_connection_is_an_error() -> None:
    refused = pytest.raises(httpx.RemoteProtocolError, match="without sending a response")
    with scripted(lambda n, r: (b"", True)) as server, Http1Transport() as transport, refused:
        get(transport, server.url)
    assert len(server.requests) == 1  # never sent twice on fresh connections


def test_truncated_body_is_an_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    with scripted(lambda n, r: (answer, True)) as server, Http1Transport() as transport:
        with pytest.raises(httpx.RemoteProtocolError, match="middle of the body"):
            get(transport, server.url)
        assert transport.idle_connections() == 0


@pytest.mark.parametrize(
    "answer",
    [b"SMTP ready\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"],
)  # fmt: skip
def test_malformed_answer_is_a_protocol_error(answer: bytes) -> None:
    malformed = pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP response")
    with scripted(lambda n, r: (answer, True)) as server, Http1Transport() as transport, malformed:
        get(transport, server.url)


def test_huge_response_head_refused() -> None:
    header = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    answer = b"HTTP/1.1 200 OK\r\n" + header * (MAX_HEAD_BYTES // len(header) + 2) + b"\r\n"
    refused = pytest.raises(httpx.RemoteProtocolError, match="response head larger than")
    with scripted(lambda n, r: (answer, True)) as server, Http1Transport() as transport, refused:
        get(transport, server.url)


def test_silent_server_times_out() -> None:
    half = b"HTTP/1.1 200 OK\r\n"  # and then nothing
    timed_out = pytest.raises(httpx.ReadTimeout)
    with scripted(lambda n, r: (half, False)) as server, Http1Transport() as transport, timed_out:
        timeout = {**TIMEOUT, "read": 0.3}
        transport.handle_request(httpx.Request("GET", server.url, extensions={"timeout": timeout}))


def test_refused_connection_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with Http1Transport() as transport, pytest.raises(httpx.ConnectError):
        get(transport, f"http://127.0.0.1:{port}/")


def test_body_closed_early_closes_the_connection() -> None:
    answer = ok(b"y" * 200_000)
    with scripted(lambda n, r: (answer, False)) as server, Http1Transport() as transport:
        request = httpx.Request("GET", server.url, extensions={"timeout": TIMEOUT})
        response = transport.handle_request(request)
        next(response.iter_raw())  # a cap reached: the rest is not read
        response.close()
        assert transport.idle_connections() == 0
        assert get(transport, server.url)[1] == b"y" * 200_000
    assert server.connections == 2


def test_open_connections_bounded_idle_ones_included() -> None:
    servers = [Scripted(lambda n, r: (ok(b"k"), False)) for _ in range(3)]
    try:
        transport = Http1Transport(max_connections=2)
        for server in servers:  # one request at a time, three hosts
            assert get(transport, server.url)[1] == b"k"
            assert transport.open_connections() <= 2
        assert transport.idle_connections() == 2
        assert get(transport, servers[2].url)[1] == b"k"  # the newest was kept
        assert servers[2].connections == 1
        assert get(transport, servers[0].url)[1] == b"k"  # the oldest made room
        assert servers[0].connections == 2
        transport.close()
        assert transport.idle_connections() == transport.open_connections() == 0
    finally:
        for server in servers:
            server.stop()


def test_a_second_answer_in_the_same_packet_is_not_mixed_in() -> None:
    smuggled = ok(b"a") + ok(b"EVIL", "X-Evil: 1")
    script = lambda n, r: (smuggled if n == 1 else ok(b"b"), False)  # noqa: E731
    with scripted(script) as server, Http1Transport() as transport:
        status, body, headers = get(transport, server.url)
        assert (status, body, headers["content-length"], "x-evil" in headers) == (
            200, b"a", "1", False)  # fmt: skip
        assert transport.idle_connections() == 0  # that connection is not trusted again
        assert get(transport, server.url)[1] == b"b"
    assert server.connections == 2


def test_more_body_than_declared_is_cut_at_the_length() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world"
    with scripted(lambda n, r: (answer, True)) as server, Http1Transport() as transport:
        assert get(transport, server.url)[1] == b"hello"
        assert transport.idle_connections() == 0


def test_trailers_are_not_headers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nfeed\r\n0\r\nContent-Encoding: gzip\r\nSet-Cookie: t=1\r\n\r\n"
    )
    with scripted(lambda n, r: (chunked, False)) as server, Http1Transport() as transport:
        _, body, headers = get(transport, server.url)
    assert (body, "content-encoding" in headers, "set-cookie" in headers) == (b"feed", False, False)


def test_the_deadline_bounds_a_slow_body() -> None:
    def script(n: int, request: bytes) -> Answer:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False  # then silence

    with scripted(script) as server, Http1Transport() as transport:
        extensions = {"timeout": {**TIMEOUT, "read": 5.0}, "deadline": 0.5}
        response = transport.handle_request(httpx.Request("GET", server.url, extensions=extensions))
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            b"".join(response.iter_raw())
        response.close()
    assert time.monotonic() - started < 2.0  # the deadline, not the 5 s read timeout


def test_connects_to_and_names_the_ascii_form_of_an_idna_host() -> None:
    dialled: list[str] = []

    def connect(host: str, port: int, timeout: float) -> socket.socket:
        dialled.append(host)
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    with (
        scripted(lambda n, r: (ok(b"k"), False)) as server,
        Http1Transport(connect=connect) as transport,
    ):
        assert get(transport, f"http://xn--strae-oqa.test:{server.port}/")[1] == b"k"
    assert dialled == ["xn--strae-oqa.test"]
    assert f"Host: xn--strae-oqa.test:{server.port}".encode() in server.requests[0].split(b"\r\n")


def test_descriptors_over_1023_are_reused() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"the open-files limit ({hard}) is too low to go past descriptor 1023")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers = [socket.socket() for _ in range(1100)]  # push new descriptors past select's limit
    try:
        transport = Http1Transport(look_after=0)  # every reuse polls the descriptor
        with scripted(lambda n, r: (ok(b"k"), False)) as server, transport:
            for _ in range(3):
                assert get(transport, server.url)[1] == b"k"
        assert server.connections == 1
    finally:
        for filler in fillers:
            filler.close()


def test_only_get_and_head() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/", content=b"x")
    with Http1Transport() as transport, pytest.raises(httpx.UnsupportedProtocol):
        transport.handle_request(request)


def test_send_is_the_same_exchange_without_httpx_objects() -> None:
    """The client's path: headers sent as given and in order, the reply's raw headers
    and its body as chunks; the connection is kept for the next request."""
    answer = lambda n, r: (ok(b"%d" % n, 'ETag: "e"'), False)  # noqa: E731
    with scripted(answer) as server, Http1Transport() as transport:
        url = httpx.URL(server.url)
        headers = [(b"Host", url.netloc), (b"X-One", b"1"), (b"Accept", b"*/*")]
        bodies = []
        for _ in range(2):
            reply = transport.send("GET", url, headers, read_timeout=2.0)
            bodies.append(b"".join(reply.body))
            reply.body.close()
        assert reply.status == 200
        assert (b"ETag", b'"e"') in reply.headers
    assert bodies == [b"1", b"2"] and server.connections == 1
    assert server.requests[0] == (
        b"GET /page HTTP/1.1\r\nHost: " + url.netloc + b"\r\nX-One: 1\r\nAccept: */*"
    )


@pytest.mark.parametrize(
    "header", [(b"X-Tag", b'"a"\r\nX-Injected: 1'), (b"X-Tag", b"a\nb"), (b"X\r\nY", b"z")]
)
def test_a_header_with_a_line_break_is_refused_before_connecting(
    header: tuple[bytes, bytes],
) -> None:
    with scripted(lambda n, r: (ok(b"x"), False)) as server, Http1Transport() as transport:
        url = httpx.URL(server.url)
        with pytest.raises(httpx.LocalProtocolError, match="line break"):
            transport.send("GET", url, [(b"Host", url.netloc), header])
        assert (server.connections, transport.open_connections()) == (0, 0)


def test_no_read_timeout_and_no_deadline_still_reads() -> None:
    """An infinite timeout is a wait without a limit, not an error."""
    with scripted(lambda n, r: (ok(b"fine"), False)) as server, Http1Transport() as transport:
        url = httpx.URL(server.url)
        reply = transport.send(
            "GET", url, [(b"Host", url.netloc)], read_timeout=math.inf, write_timeout=math.inf
        )
        assert (reply.status, b"".join(reply.body)) == (200, b"fine")
        reply.body.close()


def test_a_shorter_timeout_on_a_reused_connection_is_kept_to() -> None:
    """The kernel's receive timeout set for one request (5 s) is not left in place for
    the next request on the same connection, which asks for 0.3 s."""

    def script(n: int, request: bytes) -> Answer:
        return (ok(b"first"), False) if n == 1 else (b"HTTP/1.1 200 OK\r\n", False)

    with scripted(script) as server, Http1Transport() as transport:
        url = httpx.URL(server.url)
        reply = transport.send("GET", url, [(b"Host", url.netloc)], read_timeout=5.0)
        assert b"".join(reply.body) == b"first"
        reply.body.close()
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            transport.send("GET", url, [(b"Host", url.netloc)], read_timeout=0.3)
        assert time.monotonic() - started < 2.0
        assert server.connections == 1  # the same connection, reused
