"""A lean HTTP/1.1 transport for httpx: blocking sockets, keep-alive, llhttp parsing.

httpx's default transport (httpcore and h11) spends about three times as much CPU per
request as the request itself needs: for a 304 to a conditional GET, the bulk of an
unchanged re-check, h11's pure-Python state machine and httpcore's pool bookkeeping
were most of the check's cost (docs/performance.md). This transport does the wire work
itself: the request head written in one ``sendall``, the response parsed by llhttp
(Node.js's parser, through ``httptools``), the body streamed as it arrives.

Two ways in: :meth:`Http1Transport.send` (an httpx ``URL`` and a header list in, a
:class:`Reply` out: the project's client, which skips httpx's Request and Response
objects, a quarter of an unchanged check's cost), and ``handle_request``, httpx's
transport interface, on top of it.

What it does, and does not:

- ``GET`` and ``HEAD`` without a request body: all the project's client sends.
- ``http`` and ``https`` (the context given verifies certificates and names; SNI is
  the URL's host). No proxies, no HTTP/2, no ``Expect: 100-continue``.
- Bodies framed by Content-Length, chunked encoding, or the end of the connection.
  A body is streamed as it arrives: the caller decides how much to read (caps,
  deadlines). The connection goes back to the pool only once its response was read to
  the end and the server allows keep-alive; one closed early is closed.
- The response head must arrive within the read timeout and be at most
  ``MAX_HEAD_BYTES``. A plain connection waits in the kernel (``SO_RCVTIMEO``, see
  ``_set_timeout``); a TLS one with Python's socket timeout.
- A request header whose name or value holds a line break is refused before anything
  is sent (``LocalProtocolError``).
- A kept-alive connection idle for ``look_after`` seconds or more (10 ms by default)
  is polled before reuse and dropped if the server has closed it or sent something
  unasked. A younger one is not polled (the poll is a system call and, with many
  threads, a hand-off of the GIL): bytes that arrive within those milliseconds of the
  last answer are no more caught than bytes arriving just after any reuse, which no
  poll can catch. If a reused connection fails before any byte of the response,
  answers with bytes that are not the start of an answer, or answers "408 Request
  Timeout" (a server closing it for idleness), the request is sent once more on a new
  connection (GET and HEAD are idempotent).
- Errors are httpx's: ``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
  ``WriteTimeout``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``.

``connect(host, port, timeout)`` opens the TCP connection (the client's SSRF guard
resolves and checks the addresses there); the default is ``socket.create_connection``.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import httptools
import httpx

__all__ = ["MAX_HEAD_BYTES", "Connect", "Http1Transport", "Reply"]

Connect = Callable[[str, int, float], socket.socket]

MAX_HEAD_BYTES = 64 * 1024  # status line and headers together
_RECV = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Parsed:
    """httptools' callbacks for one response: the head, then body pieces as they come."""

    __slots__ = (
        "body", "complete", "extra", "head_done", "headers", "interim", "keep_alive", "parser",
    )  # fmt: skip

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.interim = False  # in a 1xx answer (103 Early Hints), before the real one
        # bytes came after the complete answer (a second answer, or junk): they are
        # ignored, and the connection is not used again
        self.extra = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # not trailers, nor a second answer's headers
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code() if self.parser is not None else 0
        if 100 <= status < 200 and status != 101:  # informational: the answer follows
            self.interim, self.headers = True, []
            return
        self.head_done = True

    def on_body(self, data: bytes) -> None:
        if self.complete:
            self.extra = True
        else:
            self.body.append(data)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.interim:
            self.interim = False
            return
        # asked now: once a later feed_data has returned, llhttp has reset its flags
        if self.parser is not None:
            self.keep_alive = self.parser.should_keep_alive()
        self.parser = None  # no reference cycle left behind
        self.complete = True


class _Connection:
    __slots__ = ("closed", "idle_since", "key", "rcvtimeo", "sndtimeo", "sock")

    def __init__(self, sock: socket.socket, key: tuple[str, str, int]) -> None:
        self.sock, self.key = sock, key
        self.idle_since = 0.0
        self.closed = False
        self.rcvtimeo = self.sndtimeo = 0.0  # the kernel timeouts set (seconds; 0: none)

    def reusable(self, now: float, expiry: float, look_after: float) -> bool:
        """Idle for less than ``expiry`` seconds, and nothing to read: a closed or
        confused connection is readable (EOF or stray bytes). One idle for less than
        ``look_after`` seconds is not looked at (a system call, and a hand-off of the
        GIL): if the server has closed it meanwhile, sent bytes that are not an answer
        or a 408, the request is sent again on a new connection (``Http1Transport.send``
        and ``_exchange``)."""
        idle = now - self.idle_since
        if idle > expiry:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        if idle < look_after:
            return True
        poller = select.poll()  # not select.select: it refuses descriptors over 1023
        poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False


class _Body(httpx.SyncByteStream):
    """The response body, read from the socket as the caller iterates."""

    def __init__(
        self,
        transport: Http1Transport,
        conn: _Connection,
        parser: httptools.HttpResponseParser,
        parsed: _Parsed,
        until_eof: bool,
        read_timeout: float,
        deadline: float,
    ) -> None:
        self._transport, self._conn, self._parser, self._parsed = transport, conn, parser, parsed
        self._until_eof = until_eof  # no Content-Length, not chunked: the end is EOF
        self._read_timeout = read_timeout  # the longest silence
        self._deadline = deadline  # time.monotonic() by which the whole body is in

    def __iter__(self) -> Iterator[bytes]:
        parsed = self._parsed
        while True:
            if parsed.body:
                chunks, parsed.body = parsed.body, []
                yield from chunks
            if parsed.complete:
                return
            left = self._deadline - time.monotonic()
            data = _recv(self._conn, min(self._read_timeout, left))
            if not data:
                if self._until_eof:  # the body ends with the connection
                    self._transport._discard(self._conn)
                    return
                raise httpx.RemoteProtocolError("connection closed in the middle of the body")
            _feed(self._parser, self._parsed, data)

    def close(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        parsed = self._parsed  # read to its end, and nothing after it
        if parsed.complete and parsed.keep_alive and not parsed.extra:
            self._transport._put_back(conn)
        else:
            self._transport._discard(conn)


class Http1Transport(httpx.BaseTransport):
    """Thread-safe. At most ``max_connections`` connections are open, idle ones
    included, as long as the caller has no more requests than that in flight (the
    client's lanes see to it): the least recently used idle connection is closed to
    make room for a new one."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 10,
        keepalive_expiry: float = 5.0,
        look_after: float = 0.01,
        connect: Connect | None = None,
    ) -> None:
        """``look_after``: an idle connection is looked at for a close or stray bytes
        before it is used again once it has been idle this many seconds (see
        ``_Connection.reusable``); 0 looks at every one."""
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._max, self._expiry = max_connections, keepalive_expiry
        self._look_after = look_after
        self._connect = connect or _connect
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._open = 0  # connections open: in use and idle
        self._closed = False

    # -- the pool ------------------------------------------------------------------

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                conns = self._idle.get(key)
                if not conns:
                    return None
                conn = conns.pop()  # the most recently used: the least likely closed
                self._idle_count -= 1
                if not conns:
                    del self._idle[key]
            if conn.reusable(now, self._expiry, self._look_after):
                return conn
            self._discard(conn)

    def _put_back(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and self._idle_count < self._max:
                self._idle.setdefault(conn.key, []).append(conn)
                self._idle_count += 1
                return
        self._discard(conn)

    def _make_room(self) -> None:
        """Count a connection about to be opened; close the least recently used idle
        one if that would be one too many."""
        victim = None
        with self._lock:
            self._open += 1
            if self._open > self._max and self._idle_count:
                key = min(self._idle, key=lambda k: self._idle[k][0].idle_since)
                conns = self._idle[key]
                victim = conns.pop(0)
                self._idle_count -= 1
                if not conns:
                    del self._idle[key]
        if victim is not None:
            self._discard(victim)

    def _discard(self, conn: _Connection) -> None:
        """Close ``conn`` (once) and stop counting it."""
        with self._lock:
            if conn.closed:
                return
            conn.closed = True
            self._open -= 1
        conn.sock.close()

    def idle_connections(self) -> int:
        with self._lock:
            return self._idle_count

    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for group in self._idle.values() for c in group]
            self._idle.clear()
            self._idle_count = 0
        for conn in conns:
            self._discard(conn)

    # -- one request ---------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's transport interface, on :meth:`send`."""
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") or 20.0
        reply = self.send(
            request.method,
            request.url,
            request.headers.raw,
            connect_timeout=timeouts.get("connect") or 10.0,
            read_timeout=read_timeout,
            write_timeout=timeouts.get("write") or read_timeout,
            deadline=request.extensions.get("deadline", math.inf),
        )
        return httpx.Response(
            reply.status,
            headers=reply.headers,
            stream=reply.body,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def send(
        self,
        method: str,
        url: httpx.URL,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 20.0,
        write_timeout: float = 20.0,
        deadline: float = math.inf,
    ) -> Reply:
        """One request, without httpx's Request and Response objects (the client's
        path): ``headers`` are sent as given, in order, so they include ``Host``;
        ``deadline`` is the seconds left for the whole exchange, body included. The
        reply's body must be read or closed."""
        if method not in ("GET", "HEAD"):
            raise httpx.UnsupportedProtocol(f"method {method} is not supported here")
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        until = time.monotonic() + deadline
        # the name as sent (IDNA-encoded): what is resolved and verified, and SNI
        host = url.raw_host.decode("ascii")
        key = (url.scheme, host, url.port or _DEFAULT_PORTS[url.scheme])
        head = _request_head(method, url.raw_path, headers)
        reused = self._take_idle(key)
        if reused is not None:
            try:
                return self._exchange(
                    reused, method, head, write_timeout, read_timeout, until, reused=True
                )
            except _Stale:
                pass  # closed or confused meanwhile (see _exchange): once more, on a new one
        conn = self._connect_new(key, min(connect_timeout, until - time.monotonic()))
        try:
            return self._exchange(
                conn, method, head, write_timeout, read_timeout, until, reused=False
            )
        except _Stale as exc:
            raise httpx.RemoteProtocolError(
                "server disconnected without sending a response"
            ) from exc

    def _connect_new(self, key: tuple[str, str, int], timeout: float) -> _Connection:
        scheme, host, port = key
        if timeout <= 0:
            raise httpx.ConnectTimeout(f"no time left to connect to {host}:{port}")
        self._make_room()
        try:
            sock = self._connect(host, port, timeout)
        except BaseException as exc:
            with self._lock:
                self._open -= 1
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        conn = _Connection(sock, key)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock.settimeout(timeout)
                conn.sock = self.ssl_context.wrap_socket(sock, server_hostname=host)
            else:
                sock.settimeout(None)  # blocking; the kernel times each call (_set_timeout)
        except BaseException as exc:
            self._discard(conn)
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"TLS handshake with {host}:{port} timed out") from exc
            if isinstance(exc, OSError):  # ssl.SSLError included
                raise httpx.ConnectError(str(exc)) from exc
            raise
        return conn

    def _exchange(
        self,
        conn: _Connection,
        method: str,
        head: bytes,
        write_timeout: float,
        read_timeout: float,
        deadline: float,
        *,
        reused: bool,
    ) -> Reply:
        """``reused``: a head that does not parse is taken for stray bytes the server
        sent after its last answer on this connection, and a 408 for the server closing
        it; either raises ``_Stale`` (the request goes again on a new connection, where
        the same answer is an error or returned)."""
        sock = conn.sock
        try:
            _set_timeout(conn, min(write_timeout, deadline - time.monotonic()), send=True)
            try:
                sock.sendall(head)
            except (TimeoutError, BlockingIOError) as exc:
                raise httpx.WriteTimeout("timed out sending the request") from exc
            except OSError as exc:
                raise _Stale from exc
            parsed = _Parsed()
            parser = parsed.parser = httptools.HttpResponseParser(parsed)
            head_by = min(time.monotonic() + read_timeout, deadline)  # the whole head
            received = 0
            while not parsed.head_done:
                data = _recv(conn, head_by - time.monotonic(), first=received == 0)
                if not data:
                    if received == 0:
                        raise _Stale
                    raise httpx.RemoteProtocolError("connection closed in the response head")
                room = MAX_HEAD_BYTES - received  # the head must end within the limit
                received += len(data)
                try:
                    _feed(parser, parsed, data[:room])
                except httpx.RemoteProtocolError as exc:
                    if reused and not parsed.head_done:
                        raise _Stale from exc
                    raise
                if len(data) > room:
                    if not parsed.head_done:
                        raise httpx.RemoteProtocolError(
                            f"response head larger than {MAX_HEAD_BYTES} bytes"
                        )
                    _feed(parser, parsed, data[room:])
            status = parser.get_status_code()
            if reused and status == 408:
                # sent by a server closing the connection for idleness, before our
                # request came in (browsers send the request again too)
                raise _Stale
        except BaseException:
            self._discard(conn)
            raise
        if method == "HEAD":
            parsed.complete, parsed.body = True, []
        names = {name.lower() for name, _ in parsed.headers}
        until_eof = (
            not parsed.complete
            and b"content-length" not in names
            and b"transfer-encoding" not in names
        )
        body = _Body(self, conn, parser, parsed, until_eof, read_timeout, deadline)
        return Reply(status, parsed.headers, body)


class Reply:
    """A response head, and its body to read (iterate) or close."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: _Body) -> None:
        self.status, self.headers, self.body = status, headers, body


class _Stale(Exception):
    """A reused connection failed before any byte of the response came back, what came
    back was not the start of an answer, or it was a 408 (the server closing it)."""


def _request_head(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    # one CR and one LF per line: a line break in a name or value would end the head
    # early, or add a header of the sender's making
    lines = len(headers) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        name = next((n for n, v in headers if b"\r" in n + v or b"\n" in n + v), b"?")
        raise httpx.LocalProtocolError(f"line break in the request header {name!r}")
    return head


def _recv(conn: _Connection, timeout: float, *, first: bool = False) -> bytes:
    """Up to _RECV bytes within ``timeout`` seconds; b"" at EOF."""
    try:
        if timeout <= 0:
            raise TimeoutError
        _set_timeout(conn, timeout)
        return conn.sock.recv(_RECV)
    except (TimeoutError, BlockingIOError) as exc:
        raise httpx.ReadTimeout("timed out reading the response") from exc
    except ssl.SSLError as exc:
        raise httpx.ReadError(f"TLS error reading the response: {exc}") from exc
    except OSError as exc:
        if first and isinstance(exc, ConnectionResetError | BrokenPipeError):
            raise _Stale from exc
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


_TIMEVAL = struct.Struct("@ll")
_LONGEST = 365 * 86400.0  # an infinite timeout waits a year at a time


def _set_timeout(conn: _Connection, seconds: float, *, send: bool = False) -> None:
    """The longest wait of the next receive, or send.

    A TLS socket keeps Python's own timeout (a poll before every call). A plain one is
    in blocking mode, with the kernel's timeout (``SO_RCVTIMEO``, ``SO_SNDTIMEO``): one
    system call per receive instead of two, and so one hand-off of the GIL, not two,
    per call (with many worker threads, the hand-offs cost more than the calls). At its
    end the call fails with EAGAIN, which Python raises as BlockingIOError.

    The kernel's value is changed only when the one asked for is longer than it, or
    shorter by more than 1% (at least 10 ms): a receive may wait that much longer than
    asked, and most receives need no system call to set it.

    A signal handled in the calling thread restarts the kernel's wait in full (Python
    retries the call): the poller's worker threads block the daemon's signals
    (daemon/schedule.py)."""
    sock = conn.sock
    if isinstance(sock, ssl.SSLSocket):
        sock.settimeout(max(0.001, seconds))
        return
    current = conn.sndtimeo if send else conn.rcvtimeo
    if current - max(0.01, current / 100) <= seconds <= current:
        return
    # never 0, which would mean no limit
    micros = math.ceil(max(0.001, min(seconds, _LONGEST)) * 1e6)
    option = socket.SO_SNDTIMEO if send else socket.SO_RCVTIMEO
    sock.setsockopt(socket.SOL_SOCKET, option, _TIMEVAL.pack(*divmod(micros, 1_000_000)))
    if send:
        conn.sndtimeo = micros / 1e6
    else:
        conn.rcvtimeo = micros / 1e6


def _feed(parser: httptools.HttpResponseParser, parsed: _Parsed, data: bytes) -> None:
    try:
        parser.feed_data(data)
    except httptools.HttpParserError as exc:  # HttpParserUpgrade included
        if parsed.complete:  # junk after a complete answer: ignored, never reused
            parsed.extra = True
            return
        if isinstance(exc, httptools.HttpParserUpgrade):
            raise httpx.RemoteProtocolError("the server switched protocols") from exc
        raise httpx.RemoteProtocolError(f"malformed HTTP response: {exc}") from exc


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)
