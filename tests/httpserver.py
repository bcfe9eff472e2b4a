"""A real HTTP server on 127.0.0.1 for tests: routes are set per test, it counts hits,
and it stops when the test ends."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[BaseHTTPRequestHandler], Reply]


class Server:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, reply: Reply | Route) -> None:
        self.routes[path] = reply if callable(reply) else (lambda _h, r=reply: r)


@contextmanager
def running() -> Iterator[Server]:
    server: Server

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.hits[self.path] += 1
            route = server.routes.get(self.path)
            reply = route(self) if route else Reply(404, b"not found")
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if "Content-Length" not in reply.headers:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = Server(httpd)
    with serving(httpd):
        yield server


@contextmanager
def serving(httpd: HTTPServer) -> Iterator[HTTPServer]:
    """Serve ``httpd`` from a thread; shut down and closed on the way out."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def rss(items: list[tuple[str, str, str, str]], *, ttl: int | None = None) -> bytes:
    """An RSS 2.0 document from (guid, title, description, RFC 822 date) tuples."""
    parts = [
        f"<item><guid>{g}</guid><link>{g}</link><title>{t}</title>"
        f"<description>{d}</description><pubDate>{p}</pubDate></item>"
        for g, t, d, p in items
    ]
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Test feed</title><link>http://example.com/</link>{ttl_tag}"
        + "".join(parts)
        + "</channel></rss>"
    ).encode()
