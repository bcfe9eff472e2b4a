"""A loopback article-page server for bench/recheck.py: N distinct news article pages.

usage: python bench/pageserver.py [--pages N] [--port 0]

A threaded HTTP/1.1 server (keep-alive, a thread per connection, answers prepared as
bytes) in its own process, bound to 127.0.0.1 only. Prints ``ready <port>`` on stdout
once it listens; stops on SIGTERM/SIGINT or when stdin closes (so it never outlives
the benchmark that started it).

Every page is a realistic article page of ~36-55 KB: head with meta tags, a large
inline config script and JSON-LD, a cookie banner, header and navigation, ad slots,
the article (headline, standfirst, byline, 12-22 paragraphs), related links, a "most
viewed" box, a big footer and trailing scripts. Pages are deterministic (seeded by the
page number) and built once at start, with a second version of each (one paragraph
rewritten, ``article:modified_time`` moved on) for the revision phase.

Routes:
  /article/NNNN.html   page number NNNN (0-based, 4+ digits)
  /_mode/etag          (default) send ``ETag``; answer 304 to a matching If-None-Match
  /_mode/plain         send no validator at all; always 200 with the same bytes
  /_revise/K           pages whose number is a multiple of K serve their second
                       version from now on (K=0: none); answers how many that is
  /_stats              JSON: requests, 200s, 304s, bytes sent, connections, server CPU
  /_reset              zero the counters
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import signal
import socket
import sys
import threading
import time
from typing import Any

from common import WORDS

_HOME_NEWS = (
    "government households families schools teachers doctors nurses patients "
    "farmers harvest weather coast villages residents evacuated rescue teams"
)
_WORDS = [*WORDS, *_HOME_NEWS.split()]  # the shared words and some of home news
_NAMES = ("Andrew Roth", "Jessica Elgot", "Peter Walker", "Fiona Harvey", "Dan Sabbagh",
          "Helena Smith", "Julian Borger", "Kalyeena Makortoff", "Rowena Mason")  # fmt: skip
_SECTIONS = ("world", "politics", "business", "environment", "science", "uk-news",
             "technology", "money", "education", "society")  # fmt: skip
_PAGE = re.compile(r"^/article/(\d{4,})\.html$")
_REVISED_PARAGRAPH = 2  # the paragraph rewritten in the second version


def _sentence(r: random.Random, low: int = 8, high: int = 18) -> str:
    words = [r.choice(_WORDS) for _ in range(r.randint(low, high))]
    return " ".join(words).capitalize() + "."


def _paragraph(r: random.Random) -> str:
    return " ".join(_sentence(r) for _ in range(r.randint(2, 4)))


def _links(r: random.Random, count: int, css: str, base: str) -> str:
    items = []
    for _ in range(count):
        slug = "-".join(r.choice(_WORDS) for _ in range(r.randint(3, 7)))
        text = _sentence(r, 4, 9).rstrip(".")
        items.append(f'<li class="{css}__item"><a class="{css}__link" data-link-name="{css}" '
                     f'href="https://www.news.example/{base}/2026/nov/{r.randint(1, 28):02d}/'
                     f'{slug}">{text}</a></li>')  # fmt: skip
    return "\n            ".join(items)


def _config_script(r: random.Random, number: int) -> str:
    """The big inline ``window.config`` blob news sites ship (ad, A/B, tracking)."""
    switches = {
        f"{r.choice(_WORDS)}-{r.choice(_WORDS)}-{i}": r.random() < 0.5
        for i in range(r.randint(80, 640))
    }
    tests = {f"ab{r.choice(_WORDS).title()}{i}": r.choice(["control", "variant", "notintest"])
             for i in range(90)}  # fmt: skip
    data = {
        "page": {"pageId": f"article-{number:04d}", "isPaidContent": False,
                 "keywordIds": [f"{r.choice(_SECTIONS)}/{r.choice(_WORDS)}" for _ in range(30)],
                 "ajaxUrl": "https://api.news.example", "edition": "UK"},
        "switches": switches,
        "tests": tests,
        "libs": {"googletag": "https://securepubads.g.doubleclick.net/tag/js/gpt.js"},
        "stage": "PROD",
        "nonce": hashlib.sha1(f"nonce-{number}".encode()).hexdigest(),
    }  # fmt: skip
    return json.dumps(data, separators=(",", ":"))


def page_bodies(number: int) -> tuple[bytes, bytes]:
    """Version 1 and version 2 (one paragraph rewritten) of page ``number``."""
    r = random.Random(number)
    section = r.choice(_SECTIONS)
    title = _sentence(r, 7, 12).rstrip(".")
    standfirst = _sentence(r, 12, 20)
    author = r.choice(_NAMES)
    published = f"2026-11-{1 + number % 21:02d}T{number % 24:02d}:{number % 60:02d}:00Z"
    paragraphs = [_paragraph(r) for _ in range(r.randint(12, 22))]
    for i in range(2, len(paragraphs), 5):  # the odd inline link, as articles have
        words = paragraphs[i].split(" ")
        words[3] = f'<a href="https://www.news.example/{section}/{words[3]}">{words[3]}</a>'
        paragraphs[i] = " ".join(words)
    head_script = _config_script(r, number)
    nav = _links(r, 40, "nav", section)
    related = _links(r, 6, "related", section)
    popular = _links(r, 10, "most-viewed", section)
    footer = _links(r, 45, "footer", "info")
    revised = _paragraph(random.Random(-1 - number))
    versions = []
    for version, modified in ((1, published), (2, published.replace("00Z", "59Z"))):
        paras = list(paragraphs)
        if version == 2:
            paras[_REVISED_PARAGRAPH] = revised
        body = "\n                ".join(f"<p>{p}</p>" for p in paras)
        ld = json.dumps({"@context": "http://schema.org", "@type": "NewsArticle",
                         "headline": title, "datePublished": published,
                         "dateModified": modified,
                         "author": [{"@type": "Person", "name": author}],
                         "publisher": {"@type": "Organization",
                                       "name": "The Example"}})  # fmt: skip
        html = f"""<!DOCTYPE html>
<html lang="en-GB">
<head>
    <meta charset="utf-8">
    <title>{title} | {section.title()} | The Example</title>
    <meta name="viewport" content="width=device-width,minimum-scale=1,initial-scale=1">
    <meta name="description" content="{standfirst}">
    <meta name="author" content="{author}">
    <link rel="canonical" href="/article/{number:04d}.html">
    <meta property="og:type" content="article">
    <meta property="og:site_name" content="The Example">
    <meta property="og:title" content="{title}">
    <meta property="og:description" content="{standfirst}">
    <meta property="article:published_time" content="{published}">
    <meta property="article:modified_time" content="{modified}">
    <meta property="article:section" content="{section.title()}">
    <meta name="twitter:card" content="summary_large_image">
    <link rel="stylesheet" href="https://assets.news.example/stylesheets/content.{number:08x}.css">
    <script>window.config = {head_script};</script>
    <script type="application/ld+json">{ld}</script>
</head>
<body id="top">
    <a class="skip" href="#maincontent">Skip to main content</a>
    <div class="site-message" id="cmp-banner" role="dialog" aria-label="Cookie consent">
        <p>We use cookies to improve your experience on our site and to show you personalised
        advertising. To find out more, read our privacy policy and cookie policy.</p>
        <button type="button" data-link-name="cookie : accept">OK</button>
    </div>
    <header class="new-header" role="banner">
        <a class="new-header__logo"
           href="https://www.news.example/uk">The Example - Back to home</a>
        <nav class="pillars" role="navigation" aria-label="Sections">
            <ul class="pillars__list">
            {nav}
            </ul>
        </nav>
    </header>
    <div class="ad-slot ad-slot--top" id="dfp-ad--top" aria-hidden="true">
        <p class="ad-slot__label">Advertisement</p>
        <script>googletag.cmd.push(function() {{ googletag.display("dfp-ad--top"); }});</script>
    </div>
    <main id="maincontent" role="main">
    <article id="article" class="content content--article" itemscope itemtype="http://schema.org/NewsArticle">
        <div class="content__head">
            <div class="content__labels"><a class="content__section-label" href="https://www.news.example/{section}">{section.title()}</a></div>
            <h1 class="content__headline" itemprop="headline">{title}</h1>
            <div class="content__standfirst" itemprop="description"><p>{standfirst}</p></div>
        </div>
        <div class="content__meta-container">
            <p class="byline" data-link-name="byline"><span itemprop="author"><a rel="author"
               href="https://www.news.example/profile/{author.lower().replace(" ", "-")}"><span
               itemprop="name">{author}</span></a></span></p>
            <p class="content__dateline"><time itemprop="datePublished"
               datetime="{published}">{published}</time></p>
            <div class="meta__social"><ul class="social">
              <li><a href="https://www.facebook.com/sharer?u=1">Share on Facebook</a></li>
              <li><a href="https://twitter.com/intent/tweet?text=x">Share on Twitter</a></li>
            </ul></div>
        </div>
        <div class="content__article-body" itemprop="articleBody">
                {body}
        </div>
        <div class="ad-slot ad-slot--inline" id="dfp-ad--inline1" aria-hidden="true">
            <script>
              googletag.cmd.push(function() {{ googletag.display("dfp-ad--inline1"); }});
            </script>
        </div>
    </article>
    <aside class="content-footer" role="complementary" aria-label="Related content">
        <h2>More on this story</h2>
        <ul class="related">
            {related}
        </ul>
    </aside>
    </main>
    <div class="fc-container fc-container--most-popular" data-component="most-viewed">
        <h2>Most viewed</h2>
        <ol class="most-popular__list">
            {popular}
        </ol>
    </div>
    <footer class="l-footer" role="contentinfo">
        <ul class="colophon__list">
            {footer}
        </ul>
        <p class="copyright">&#169; 2026 The Example News Limited or its affiliated companies.
           All rights reserved.</p>
    </footer>
    <script src="https://assets.news.example/javascripts/app.{number:08x}.js" async></script>
    <script>window.performance && performance.mark("page-end-{number:08x}");</script>
</body>
</html>
"""
        versions.append(html.encode("utf-8"))
    return versions[0], versions[1]


class Pages:
    """Every page's two versions and ETags, the mode, and the counters. Thread-safe."""

    def __init__(self, count: int) -> None:
        self.bodies = [page_bodies(n) for n in range(count)]
        self.etags = [tuple(f'"{hashlib.sha1(b).hexdigest()[:20]}"' for b in pair)
                      for pair in self.bodies]  # fmt: skip
        self.mode = "etag"
        self.revise_every = 0
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = self.ok = self.not_modified = self.sent = self.connections = 0
            self.cpu_mark = _cpu_seconds()
            self.wall_mark = time.monotonic()

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "revise_every": self.revise_every,
            "requests": self.requests,
            "ok": self.ok,
            "not_modified": self.not_modified,
            "bytes_sent": self.sent,
            "connections": self.connections,
            "cpu_seconds": round(_cpu_seconds() - self.cpu_mark, 3),
            "wall_seconds": round(time.monotonic() - self.wall_mark, 3),
        }

    def page(self, number: int) -> tuple[bytes, str]:
        version = 1 if self.revise_every and number % self.revise_every == 0 else 0
        return self.bodies[number][version], self.etags[number][version]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_MAX_HEAD = 64 * 1024
_TYPE = b"Content-Type: text/html; charset=utf-8\r\n"


class Server:
    """HTTP/1.1 with keep-alive, a thread per connection, on a plain socket: each request
    head is read up to its blank line and answered in one ``sendall`` (the page bodies
    are built once, at start). ``http.server`` parsed every request with the email
    package and wrote the head and the body separately: about 0.15 ms of CPU a page
    under its one GIL, which bounded the benchmark's wall time, not the client's work
    (docs/performance.md)."""

    def __init__(self, pages: Pages, port: int) -> None:
        self.pages = pages
        self.listener = socket.create_server(("127.0.0.1", port), backlog=128)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()

    def shutdown(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        with self.listener:
            while not self._stop.is_set():
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                with self.pages.lock:
                    self.pages.connections += 1
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data or len(buffer) > _MAX_HEAD:
                            return
                        buffer += data
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    answer, close = self._answer(head)
                    conn.sendall(answer)
                except OSError:
                    return
                if close:
                    return

    def _answer(self, head: bytes) -> tuple[bytes, bool]:
        line, _, fields = head.partition(b"\r\n")
        method, target, _version = [*line.split(b" "), b"", b""][:3]
        lowered = fields.lower()
        close = b"connection: close" in lowered
        if method != b"GET":
            return _plain(405, b"GET only\n"), True
        path = target.decode("latin-1")
        found = _PAGE.match(path)
        pages = self.pages
        if found and int(found.group(1)) < len(pages.bodies):
            return self._page(int(found.group(1)), lowered), close
        if path in ("/_mode/etag", "/_mode/plain"):
            pages.mode = path.rsplit("/", 1)[1]
            return _json({"mode": pages.mode}), close
        if path.startswith("/_revise/") and path[9:].isdigit():
            pages.revise_every = every = int(path[9:])
            revised = len(range(0, len(pages.bodies), every)) if every else 0
            return _json({"revise_every": every, "revised": revised}), close
        if path == "/_stats":
            return _json(pages.stats()), close
        if path == "/_reset":
            pages.reset()
            return _json({"reset": True}), close
        return _plain(404, b"not found\n"), close

    def _page(self, number: int, lowered_fields: bytes) -> bytes:
        pages = self.pages
        body, etag = pages.page(number)
        if pages.mode == "etag":
            tag = etag.encode("ascii")
            if _field(lowered_fields, b"if-none-match") == tag:
                with pages.lock:
                    pages.requests += 1
                    pages.not_modified += 1
                return b"HTTP/1.1 304 Not Modified\r\nETag: " + tag + b"\r\n\r\n"
            extra = b"ETag: " + tag + b"\r\n"
        else:
            extra = b""
        with pages.lock:
            pages.requests += 1
            pages.ok += 1
            pages.sent += len(body)
        length = b"Content-Length: %d\r\n\r\n" % len(body)
        return b"HTTP/1.1 200 OK\r\n" + _TYPE + extra + length + body


def _field(lowered_fields: bytes, name: bytes) -> bytes | None:
    """A request header's value (names compared in lower case; the value as sent, in
    lower case too: ETags here are lower-case hex)."""
    for line in lowered_fields.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def _plain(status: int, body: bytes) -> bytes:
    reason = {404: b"Not Found", 405: b"Method Not Allowed"}[status]
    head = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    return head % (status, reason, len(body)) + body


def _json(data: dict[str, Any]) -> bytes:
    body = json.dumps(data).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    pages = Pages(args.pages)
    httpd = Server(pages, args.port)

    def stop(*_: object) -> None:
        httpd.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin() -> None:
        while os.read(0, 4096):  # returns b"" when the benchmark closes our stdin or dies
            pass
        stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    sizes = [len(v1) for v1, _ in pages.bodies]
    print(f"ready {httpd.port} {min(sizes)} {max(sizes)} {sum(sizes)}", flush=True)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
