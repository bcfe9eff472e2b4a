"""A loopback feed server for bench/poll.py: N RSS 2.0 feeds with added latency.

usage: python bench/feedserver.py [--feeds N] [--entries 20] [--latency-ms 30] [--port 0]

One asyncio process (HTTP/1.1 with keep-alive, HTTP/1.0 and ``Connection: close``
honoured), bound to 127.0.0.1 only. Every request waits ``--latency-ms`` before its
answer, concurrently (``asyncio.sleep``), so the added latency never queues. Prints
``ready <port>`` on stdout once it listens; stops on SIGTERM/SIGINT or when stdin closes
(so it never outlives the benchmark that started it).

Routes:
  /feed/NNNN.xml       feed number NNNN (0-based, 4+ digits), ~12 KB, 20 entries
  /_mode/etag          (default) send ``ETag``; answer 304 to a matching If-None-Match
  /_mode/plain         send no validator at all; always 200 with the same bytes
  /_stats              JSON: requests, 304s, connections opened, server CPU seconds,
                       how late its sleeps woke up
  /_reset              zero the counters

Feed bodies are deterministic (seeded by the feed number) and built once at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import resource
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

from common import WORDS

_EPOCH = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _sentence(r: random.Random) -> str:
    words = [r.choice(WORDS) for _ in range(r.randint(6, 12))]
    return " ".join(words).capitalize() + "."


def feed_body(number: int, entries: int = 20) -> bytes:
    """RSS 2.0 with guid, link, title, description (escaped HTML) and pubDate; ~12 KB."""
    r = random.Random(number)
    site = f"https://news{number:04d}.example"
    items = []
    for j in range(entries):
        title = _sentence(r).rstrip(".")
        paragraphs = "".join(f"<p>{_sentence(r)} {_sentence(r)}</p>" for _ in range(2))
        published = format_datetime(_EPOCH - timedelta(hours=j * 3 + number % 7))
        link = f"{site}/{2026 - j // 10}/story-{number:04d}-{j:02d}.html"
        items.append(
            "<item>"
            f"<title>{escape(title)}</title>"
            f"<link>{link}</link>"
            f'<guid isPermaLink="false">{site}/id/{number:04d}-{j:02d}</guid>'
            f"<description>{escape(paragraphs)}</description>"
            f"<pubDate>{published}</pubDate>"
            "</item>\n"
        )
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0"><channel>\n'
        f"<title>News {number:04d}</title><link>{site}/</link>"
        f"<description>Latest stories from news {number:04d}</description>"
        f"<language>en</language><lastBuildDate>{format_datetime(_EPOCH)}</lastBuildDate>\n"
    )
    return (head + "".join(items) + "</channel></rss>\n").encode()


class FeedServer:
    def __init__(self, feeds: int, entries: int, latency: float) -> None:
        self.latency = latency
        self.mode = "etag"
        self.bodies = [feed_body(n, entries) for n in range(feeds)]
        self.etags = [f'"{hashlib.sha1(b).hexdigest()[:20]}"' for b in self.bodies]
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.not_modified = 0
        self.overshoot_total = 0.0
        self.overshoot_max = 0.0
        self.in_flight = 0
        self.in_flight_max = 0
        self.connections = 0
        self.cpu_mark = _cpu_seconds()
        self.wall_mark = time.monotonic()

    def stats(self) -> dict[str, float | int | str]:
        wall = time.monotonic() - self.wall_mark
        cpu = _cpu_seconds() - self.cpu_mark
        return {
            "mode": self.mode,
            "requests": self.requests,
            "not_modified": self.not_modified,
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(wall, 3),
            "overshoot_mean_ms": round(1000 * self.overshoot_total / max(self.requests, 1), 2),
            "overshoot_max_ms": round(1000 * self.overshoot_max, 2),
            "in_flight_max": self.in_flight_max,
            "connections": self.connections,
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                keep_alive = await self.answer(head, writer)
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, OSError):
            return
        except asyncio.CancelledError:  # shutting down: not an error worth a traceback
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def answer(self, head: bytes, writer: asyncio.StreamWriter) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = [*lines[0].split(" "), "", "", ""][:3]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = version == "HTTP/1.1" and connection != "close"
        if path.startswith("/_"):
            status, body, extra = self.control(path)
        else:
            self.requests += 1
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            asked = time.monotonic()
            try:
                await asyncio.sleep(self.latency)
            finally:
                self.in_flight -= 1
            late = time.monotonic() - asked - self.latency
            self.overshoot_total += max(late, 0.0)
            self.overshoot_max = max(self.overshoot_max, late)
            status, body, extra = self.feed(method, path, headers)
        reason = {200: "OK", 304: "Not Modified", 404: "Not Found", 405: "Not Allowed"}[status]
        out = [f"HTTP/1.1 {status} {reason}", *extra]
        if status != 304:
            out.append(f"Content-Length: {len(body)}")
        if not keep_alive:
            out.append("Connection: close")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        return keep_alive

    def feed(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, list]:
        if method != "GET":
            return 405, b"only GET\n", ["Content-Type: text/plain"]
        number = _feed_number(path)
        if number is None or number >= len(self.bodies):
            return 404, b"no such feed\n", ["Content-Type: text/plain"]
        extra = ["Content-Type: application/rss+xml; charset=utf-8"]
        if self.mode == "etag":
            etag = self.etags[number]
            extra.append(f"ETag: {etag}")
            if etag in (t.strip() for t in headers.get("if-none-match", "").split(",")):
                self.not_modified += 1
                return 304, b"", extra
        return 200, self.bodies[number], extra

    def control(self, path: str) -> tuple[int, bytes, list]:
        if path in ("/_mode/etag", "/_mode/plain"):
            self.mode = path.rsplit("/", 1)[1]
        elif path == "/_reset":
            self.reset()
        elif path != "/_stats":
            return 404, b"unknown control path\n", ["Content-Type: text/plain"]
        return 200, json.dumps(self.stats()).encode(), ["Content-Type: application/json"]


def _feed_number(path: str) -> int | None:
    if not (path.startswith("/feed/") and path.endswith(".xml")):
        return None
    digits = path[len("/feed/") : -len(".xml")]
    return int(digits) if digits.isdigit() else None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve(args: argparse.Namespace) -> None:
    app = FeedServer(args.feeds, args.entries, args.latency_ms / 1000)
    server = await asyncio.start_server(
        app.handle, "127.0.0.1", args.port, backlog=1024, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # stdin closing (the benchmark exited, even killed) stops the server too
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(4096) or stop.set())
    print(f"ready {port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
