"""The project's one HTTP client: limits, conditional GET, SSRF guard, per-host politeness.

Pure parts (address classification, Retry-After, capped decompression) live in
:mod:`adapters.httpsafety`.

Exceptions raised by :meth:`HttpClient.fetch`::

    AdapterError                     (adapters.errors)
     └── FetchError                  .url, .status
          ├── TransientFetchError    .retry_after -- try again later, with backoff
          │                          (timeout, deadline, connection/DNS error, 408, 429, 5xx)
          └── PermanentFetchError    -- fix the source before trying again
               │                     (bad scheme, blocked address, HTTPS->HTTP downgrade,
               │                      redirect loop / too many redirects, body too large,
               │                      undecodable body, other 4xx)
               ├── NotFound          status 404 -- back off, keep the source
               └── Gone              status 410 -- the only status that retires a source

Every message names the URL and the offending value.
"""

from __future__ import annotations

import base64
import functools
import heapq
import importlib.metadata
import ipaddress
import math
import socket
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters.errors import AdapterError
from adapters.http1 import Connect, Http1Transport, Reply
from adapters.httpsafety import (
    BodyDecodeError,
    CappedDecoder,
    in_networks,
    is_blocked_address,
    parse_retry_after,
)

__all__ = [
    "FetchError",
    "FetchResult",
    "Gone",
    "HttpClient",
    "HttpSettings",
    "NotFound",
    "PermanentFetchError",
    "TransientFetchError",
    "is_blocked_address",
    "parse_retry_after",
]

Resolver = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo-compatible
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LANES = 32  # connection-pool lanes (see _Lanes)
_RESOLVED_TTL = 30.0  # seconds a (host, port) that passed the address guard is trusted
_RESOLVED_MAX = 10_000
_LANE_MEMORY = 10_000  # (host, slot) pairs whose last lane is remembered
_ALLOWED_SCHEMES = frozenset({"http", "https"})


def _default_user_agent() -> str:
    try:
        version = importlib.metadata.version("storyline")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"storyline/{version} (+https://github.com/storyline/storyline)"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    timeout_connect: float = 10.0
    timeout_read: float = 20.0  # longest silence between two reads
    deadline: float = 30.0  # whole fetch, all redirect hops and the body included
    max_body_bytes: int = 15 * 1024 * 1024  # after decompression
    max_redirects: int = 5
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs exempt from the SSRF guard (LAN sources)
    per_host_concurrency: int = 2
    per_host_min_delay: float = 1.0  # seconds between two request starts to one host
    max_connections: int = 100  # open (and kept-alive) connections, all hosts together
    user_agent: str = field(default_factory=_default_user_agent)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    url: str  # final URL, after redirects
    status: int
    headers: Mapping[str, str]  # lower-case keys
    body: bytes  # decompressed; empty when not_modified
    not_modified: bool
    etag: str | None
    last_modified: str | None
    retry_after: float | None  # seconds
    elapsed: float  # seconds, from the first request start
    redirects: tuple[str, ...]  # every URL redirected to, in order


class FetchError(AdapterError):
    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class TransientFetchError(FetchError):
    def __init__(
        self, message: str, *, url: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class PermanentFetchError(FetchError):
    pass


class NotFound(PermanentFetchError):
    pass


class Gone(PermanentFetchError):
    pass


class _Slot:
    """One of a host's ``per_host_concurrency`` request slots, held for one hop."""

    __slots__ = ("_gate", "host", "index")

    def __init__(self, gate: _HostGate, host: str, index: int) -> None:
        self._gate, self.host, self.index = gate, host, index

    def release(self) -> None:
        self._gate.leave(self)


class _HostGate:
    """Per-host concurrency limit and minimum delay between request starts. Thread-safe.

    A host's slots are numbered, and the lowest free one is handed out, so that
    ``(host, slot)`` names a lane of the connection pool (see ``_Lanes``)."""

    def __init__(
        self, settings: HttpSettings, sleep: Callable[[float], None], clock: Callable[[], float]
    ):
        self._settings, self._sleep, self._clock = settings, sleep, clock
        self._lock = threading.Lock()
        self._free: dict[str, list[int]] = {}  # a heap of free slot numbers per host
        self._waiting: dict[str, threading.Condition] = {}
        self._next_start: dict[str, float] = {}

    def enter(self, host: str) -> _Slot:
        with self._lock:
            free = self._free.get(host)
            if free is None:
                free = self._free[host] = list(range(self._settings.per_host_concurrency))
            while not free:
                waiting = self._waiting.get(host)
                if waiting is None:
                    waiting = self._waiting[host] = threading.Condition(self._lock)
                waiting.wait()
            slot = _Slot(self, host, heapq.heappop(free))
            if self._settings.per_host_min_delay <= 0:
                return slot
        try:
            self._wait_turn(host)
        except BaseException:
            slot.release()
            raise
        return slot

    def leave(self, slot: _Slot) -> None:
        with self._lock:
            heapq.heappush(self._free[slot.host], slot.index)
            waiting = self._waiting.get(slot.host)
            if waiting is not None:
                waiting.notify()

    def _wait_turn(self, host: str) -> None:
        with self._lock:  # reserve a start time, then wait for it outside the lock
            now = self._clock()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self._settings.per_host_min_delay
        if start > now:
            self._sleep(start - now)


class _Lanes:
    """The keep-alive pool, split into lanes: one transport (``Http1Transport``) each.

    Lanes bound the open connections: ``max_connections`` is divided among up to
    ``_LANES`` transports, each with at most its share of requests in flight and of
    idle connections. (They were made for httpcore's pool, whose one lock serialised
    every worker thread; each lane's lock is now held only to take or give back an
    idle connection.) A request
    goes to the lane its ``(host, slot)`` used last, so a host's connections stay in
    as few lanes as it has slots in use (no more connections per host than before),
    unless that lane is full: then to the least busy lane. The total of open
    connections stays at most ``max_connections``."""

    def __init__(
        self,
        settings: HttpSettings,
        transport: Http1Transport | None,
        connect: Connect | None = None,
    ) -> None:
        if transport is not None:  # injected (tests): one lane, the caller's transport
            self.transports: list[Http1Transport] = [transport]
            self._capacity = [settings.max_connections]
        else:
            count = max(1, min(_LANES, settings.max_connections))
            share, extra = divmod(settings.max_connections, count)
            self._capacity = [share + (lane < extra) for lane in range(count)]  # sum: the cap
            tls = httpx.create_ssl_context(trust_env=False)  # one CA bundle for every lane
            self.transports = [
                Http1Transport(ssl_context=tls, max_connections=cap, connect=connect)
                for cap in self._capacity
            ]
        self._free = threading.Condition()
        self._busy = [0] * len(self.transports)
        # (host, slot) -> the lane it used last; the least recently placed are forgotten
        # past _LANE_MEMORY entries (a forgotten one just goes to the emptiest lane)
        self._last: OrderedDict[tuple[str, int], int] = OrderedDict()

    def take(self, slot: _Slot, timeout: float) -> int | None:
        """A lane with room for one more request, or None after ``timeout`` seconds of
        every lane being full. Waiting happens here, not inside one lane's pool, so a
        request takes whichever lane frees first."""
        key = (slot.host, slot.index)
        deadline = time.monotonic() + timeout
        with self._free:
            while True:
                lane = self._last.get(key)
                if lane is None or self._busy[lane] >= self._capacity[lane]:
                    lane = min(range(len(self._busy)), key=self._room, default=None)
                    if lane is None or self._room(lane) >= 0:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                        self._free.wait(remaining)
                        continue
                    self._last[key] = lane
                    self._last.move_to_end(key)
                    if len(self._last) > _LANE_MEMORY:
                        self._last.popitem(last=False)
                self._busy[lane] += 1
                return lane

    def _room(self, lane: int) -> int:
        """Minus the free places in ``lane`` (so ``min`` picks the emptiest)."""
        return self._busy[lane] - self._capacity[lane]

    def give_back(self, lane: int) -> None:
        with self._free:
            self._busy[lane] -= 1
            self._free.notify()

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


class HttpClient:
    """Fetches one URL at a time per call; safe to call from many threads at once."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: Http1Transport | None = None,
        resolver: Resolver | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._resolver = resolver or socket.getaddrinfo
        self._clock = clock
        self._gate = _HostGate(settings, sleep, clock)
        self._allowed = tuple(ipaddress.ip_network(n) for n in settings.allowed_networks)
        # requests go straight to our HTTP/1.1 transport (Http1Transport.send), without
        # httpx.Client's per-request machinery nor its Request and Response objects;
        # httpx's URLs, cookie jar and exceptions are used
        guarded = None if settings.allow_private_networks else self._connect_checked
        self._lanes = _Lanes(settings, transport, guarded)
        self._cookies = httpx.Cookies()  # kept between requests, as httpx.Client did
        self._base_headers = [
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"gzip, deflate"),
            (b"Connection", b"keep-alive"),
            (b"User-Agent", settings.user_agent.encode("ascii", "replace")),
        ]
        # (host, port) -> checked until, oldest first
        self._resolved: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._resolved_lock = threading.Lock()

    def close(self) -> None:
        self._lanes.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        conditions = _conditions(etag, last_modified)
        started: float | None = None
        current = self._validate_url(url, previous=None)
        visited = [str(current)]  # the URL asked for, then every redirect target
        while True:
            slot = self._gate.enter(current.raw_host.decode("ascii"))
            try:
                started = self._clock() if started is None else started
                with self._send(current, conditions, started, slot) as answer:
                    target = self._redirect_target(answer, current, visited)
                    if target is None:
                        return self._finish(answer, current, started, visited)
            finally:
                slot.release()
            visited.append(str(target))
            current = target

    # -- one hop ---------------------------------------------------------------------

    def _send(
        self, url: httpx.URL, conditions: list[tuple[bytes, bytes]], started: float, slot: _Slot
    ) -> _Exchange:
        remaining = self._remaining(url, started)  # the transport keeps to it, body included
        # as httpx.Request sends them: Host first, then ours
        headers = [(b"Host", url.netloc), *self._base_headers, *conditions]
        if url.userinfo:  # credentials in the URL, as httpx.Client sent them: this hop only
            token = base64.b64encode(f"{url.username}:{url.password}".encode())
            headers.append((b"Authorization", b"Basic " + token))
        if self._cookies:
            cookie = self._cookie_header(url)
            if cookie is not None:
                headers.append((b"Cookie", cookie))
        return _Exchange(self, url, headers, remaining, slot)

    def _cookie_header(self, url: httpx.URL) -> bytes | None:
        """The jar's cookies for ``url``, as the header's bytes (a cookie's value is
        sent back as it came, UTF-8 included)."""
        request = urllib.request.Request(str(url))
        self._cookies.jar.add_cookie_header(request)
        value = request.get_header("Cookie")
        return None if value is None else _header_bytes(value)

    def _remaining(self, url: httpx.URL, started: float) -> float:
        remaining = self._settings.deadline - (self._clock() - started)
        if remaining <= 0:
            raise TransientFetchError(
                f"timed out: deadline of {self._settings.deadline:g} s exceeded at {url}",
                url=str(url),
            )
        return remaining

    def _redirect_target(
        self, answer: _Answer, current: httpx.URL, visited: list[str]
    ) -> httpx.URL | None:
        if answer.status not in _REDIRECTS:
            return None
        location = answer.headers.get("location")
        if not location:
            raise PermanentFetchError(
                f"redirect {answer.status} without Location at {current}", url=str(current)
            )
        if len(visited) > self._settings.max_redirects:
            raise PermanentFetchError(
                f"too many redirects (more than {self._settings.max_redirects}) at {current}",
                url=str(current),
            )
        try:
            target = current.join(location)
        except httpx.InvalidURL as exc:
            raise PermanentFetchError(
                f"bad redirect {location!r} at {current}", url=str(current)
            ) from exc
        if str(target) in visited:
            raise PermanentFetchError(f"redirect loop to {target} at {current}", url=str(current))
        return self._validate_url(str(target), previous=current)

    def _finish(
        self, answer: _Answer, url: httpx.URL, started: float, visited: list[str]
    ) -> FetchResult:
        """``visited``: the URL asked for, then every redirect target; the last is
        ``url`` as text (made once, in fetch)."""
        headers = answer.headers
        raw_retry_after = headers.get("retry-after")
        retry_after = (
            parse_retry_after(raw_retry_after, datetime.now(UTC)) if raw_retry_after else None
        )
        status = answer.status
        self._raise_for_status(status, url, retry_after)
        if status == 304:
            for _ in _raw_chunks(answer, url):  # drain the (empty) body so the
                pass  # connection goes back to the pool and is reused
            body = b""
        else:
            body = self._read_body(answer, url, started)
        return FetchResult(
            url=visited[-1],
            status=status,
            headers=headers,
            body=body,
            not_modified=status == 304,
            etag=answer.exact("etag"),
            last_modified=answer.exact("last-modified"),
            retry_after=retry_after,
            elapsed=self._clock() - started,
            redirects=tuple(visited[1:]),
        )

    @staticmethod
    def _raise_for_status(status: int, url: httpx.URL, retry_after: float | None) -> None:
        if 200 <= status < 300 or status == 304:
            return
        message = f"HTTP {status} at {url}"
        if status == 404:
            raise NotFound(message, url=str(url), status=status)
        if status == 410:
            raise Gone(message, url=str(url), status=status)
        if status in (408, 429) or status >= 500:
            if retry_after is not None:
                message += f" (Retry-After {retry_after:g} s)"
            raise TransientFetchError(message, url=str(url), status=status, retry_after=retry_after)
        raise PermanentFetchError(message, url=str(url), status=status)

    def _read_body(self, answer: _Answer, url: httpx.URL, started: float) -> bytes:
        cap = self._settings.max_body_bytes
        encodings = [
            e.strip().lower() for e in answer.headers.get("content-encoding", "").split(",")
        ]
        encodings = [e for e in encodings if e]
        length = answer.headers.get("content-length", "")
        if not encodings and length.isdigit() and int(length) > cap:
            raise PermanentFetchError(
                f"body of {length} bytes exceeds {cap} bytes at {url}", url=str(url)
            )
        try:
            decoder = CappedDecoder(encodings)
        except BodyDecodeError as exc:
            raise PermanentFetchError(f"{exc} at {url}", url=str(url)) from exc
        parts: list[bytes] = []
        size = 0
        try:
            for raw in _raw_chunks(answer, url):
                self._remaining(url, started)  # a trickling server fails at the deadline
                data = _decode(decoder, raw, cap - size, url)
                size += len(data)
                if size > cap:
                    raise PermanentFetchError(
                        f"body exceeds {cap} bytes after decompression at {url}", url=str(url)
                    )
                parts.append(data)
        except TransientFetchError:
            self._remaining(url, started)  # the transport stopped at the deadline: say so
            raise
        try:
            decoder.finish()
        except BodyDecodeError as exc:  # the connection was cut: try again later
            raise TransientFetchError(f"{exc} at {url}", url=str(url)) from exc
        return b"".join(parts)

    # -- URL and address validation ------------------------------------------------------

    def _validate_url(self, url: str, *, previous: httpx.URL | None) -> httpx.URL:
        try:
            # a source's own URL is parsed once; a redirect target (a server's choice,
            # up to 16 KB) is not kept
            parsed = _parse_url(url) if previous is None else httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise PermanentFetchError(f"invalid URL {url!r}: {exc}", url=url) from exc
        if parsed.scheme not in _ALLOWED_SCHEMES or not parsed.raw_host:
            raise PermanentFetchError(
                f"refused URL scheme {parsed.scheme!r} (only http, https) at {url}", url=url
            )
        if previous is not None and previous.scheme == "https" and parsed.scheme == "http":
            raise PermanentFetchError(
                f"refused HTTPS to HTTP downgrade to {url} from {previous}", url=url
            )
        if not self._settings.allow_private_networks:
            self._check_addresses(parsed)
        return parsed

    def _check_addresses(self, url: httpx.URL) -> None:
        """Refuse a hop to a blocked address before taking a slot or a connection, with
        a message naming the URL. A (host, port) whose every address passed is not
        resolved again here for _RESOLVED_TTL seconds (a refusal is never remembered);
        the check that counts is the one at connect time, in _GuardedBackend."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        now = self._clock()
        with self._resolved_lock:
            if self._resolved.get((host, port), -math.inf) > now:
                return
        try:
            self._vet(host, port)
        except FetchError as exc:
            raise _naming(exc, url) from exc
        with self._resolved_lock:
            self._resolved[(host, port)] = now + _RESOLVED_TTL
            self._resolved.move_to_end((host, port))
            while len(self._resolved) > _RESOLVED_MAX:  # the oldest checks go first
                self._resolved.popitem(last=False)

    def _vet(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, each allowed by the guard; a FetchError otherwise."""
        try:
            infos = self._resolver(host, port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise TransientFetchError(f"cannot resolve {host!r}: {exc}", url=host) from exc
        addresses = list(dict.fromkeys(_address(info[4]) for info in infos))
        if not addresses:
            raise TransientFetchError(f"no address for {host!r}", url=host)
        for address in addresses:
            if is_blocked_address(address) and not self._is_allowed(address):
                raise PermanentFetchError(
                    f"refused address {address} (private, loopback or reserved)", url=host
                )
        return addresses

    def _connect_checked(self, host: str, port: int, timeout: float) -> socket.socket:
        """A connection to an address of ``host`` that the guard allows, resolved here,
        once per new connection (a reused keep-alive connection was checked when it was
        opened). TLS still verifies and sends the name, so a DNS rebinding server gets
        no second lookup to answer with a private address. Addresses are tried in turn,
        as socket.create_connection does."""
        failure: OSError | None = None
        for address in self._vet(host, port):  # raises FetchError: not httpx's to map
            try:
                return socket.create_connection((address, port), timeout=timeout)
            except OSError as exc:
                failure = exc
        assert failure is not None  # _vet never returns an empty list
        raise failure

    def _is_allowed(self, address: str) -> bool:
        return in_networks(address, self._allowed)


class _Answer:
    """A response as the client reads it: status, headers (lower-case names; repeated
    ones joined with ", ", as httpx does), and the body's raw chunks as they come."""

    __slots__ = ("chunks", "headers", "raw", "status")

    def __init__(self, reply: Reply) -> None:
        self.status = reply.status
        self.raw = reply.headers
        self.headers = _headers(reply.headers)
        self.chunks = reply.body

    def exact(self, name: str) -> str | None:
        """A header's bytes as Latin-1 text, one character per byte: a validator is
        opaque, and is sent back byte for byte however it was encoded (``headers``
        decodes UTF-8, which Latin-1 bytes could also have given)."""
        if name not in self.headers:
            return None
        key = name.encode("ascii")
        return ", ".join(v.decode("latin-1") for k, v in self.raw if k.lower() == key)


class _Exchange:
    """Context manager around one streamed request on one lane of the pool; maps httpx
    errors to ours."""

    def __init__(
        self,
        client: HttpClient,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        remaining: float,
        slot: _Slot,
    ) -> None:
        self._client, self._url, self._headers = client, url, headers
        self._remaining, self._slot = remaining, slot
        self._reply: Reply | None = None
        self._lane: int | None = None

    def __enter__(self) -> _Answer:
        client, url, remaining = self._client, self._url, self._remaining
        settings = client._settings
        lanes = client._lanes
        taken = lanes.take(self._slot, remaining)
        if taken is None:
            raise TransientFetchError(
                f"no free connection within {remaining:g} s for {url}", url=str(url)
            )
        self._lane = lane = taken
        read = min(settings.timeout_read, remaining)
        try:
            reply = self._reply = lanes.transports[lane].send(
                "GET",
                url,
                self._headers,
                connect_timeout=min(settings.timeout_connect, remaining),
                read_timeout=read,
                write_timeout=read,
                deadline=remaining,
            )
            answer = _Answer(reply)
        except httpx.HTTPError as exc:
            self.__exit__()
            raise _translate(exc, url) from exc
        except FetchError as exc:  # the guard, at connect time
            self.__exit__()
            raise _naming(exc, url) from exc
        except BaseException:
            self.__exit__()
            raise
        if "set-cookie" in answer.headers:
            response = httpx.Response(
                reply.status, headers=reply.headers, request=httpx.Request("GET", url)
            )
            client._cookies.extract_cookies(response)
        return answer

    def __exit__(self, *exc: object) -> None:
        try:
            if self._reply is not None:
                self._reply.body.close()
        finally:
            if self._lane is not None:
                self._client._lanes.give_back(self._lane)
                self._lane = None


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Names lower-cased; values decoded as ASCII, else UTF-8, else Latin-1."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _conditions(etag: str | None, last_modified: str | None) -> list[tuple[bytes, bytes]]:
    """The conditional GET's headers: each validator as the bytes it came as (see
    ``_Answer.exact``). One that could not be sent as one header value (a line break) is
    left out: the GET is then an unconditional one."""
    headers = []
    for name, value in ((b"If-None-Match", etag), (b"If-Modified-Since", last_modified)):
        if value and "\r" not in value and "\n" not in value:
            raw = _header_bytes(value, latin1=True)
            if raw is not None:
                headers.append((name, raw))
    return headers


def _header_bytes(text: str, *, latin1: bool = False) -> bytes | None:
    """``text`` as a header value: ASCII as is; beyond it, Latin-1 when ``latin1`` and
    possible (a validator, kept as its bytes' Latin-1 text), else UTF-8. None for text no
    header could carry (a lone surrogate)."""
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        pass
    if latin1:
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            pass
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


@functools.lru_cache(maxsize=4096)
def _parse_url(url: str) -> httpx.URL:
    """httpx.URL is immutable: a source's URL is parsed once, not at every check."""
    return httpx.URL(url)


def _decode(decoder: CappedDecoder, raw: bytes, limit: int, url: httpx.URL) -> bytes:
    try:
        return decoder.decode(raw, limit)
    except BodyDecodeError as exc:
        raise PermanentFetchError(f"{exc} at {url}", url=str(url)) from exc


def _raw_chunks(answer: _Answer, url: httpx.URL) -> Iterator[bytes]:
    try:
        yield from answer.chunks
    except httpx.HTTPError as exc:
        raise _translate(exc, url) from exc


def _address(sockaddr: tuple[Any, ...]) -> str:
    """An address from getaddrinfo, to connect to: an IPv6 link-local one keeps its zone
    (``fe80::1%2``), which the guard's checks ignore."""
    address = str(sockaddr[0])
    if len(sockaddr) == 4 and sockaddr[3] and "%" not in address:
        return f"{address}%{sockaddr[3]}"
    return address


def _naming(exc: FetchError, url: httpx.URL) -> FetchError:
    """The guard's error (which knows only the host) with the URL it was for."""
    return type(exc)(f"{exc} for {url}", url=str(url))


def _translate(exc: httpx.HTTPError, url: httpx.URL) -> FetchError:
    if isinstance(exc, httpx.TimeoutException):
        return TransientFetchError(f"timed out ({type(exc).__name__}) at {url}", url=str(url))
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return PermanentFetchError(f"unsupported request to {url}: {exc}", url=str(url))
    return TransientFetchError(f"{type(exc).__name__} at {url}: {exc}", url=str(url))
