"""Feeds (RSS 0.9x/1.0/2.0, Atom 0.3/1.0) to observations, one per entry.

Three steps, so the risky one can run in a worker process with a wall-clock limit:

1. :func:`adapters.xmlguard.check_prolog` (in the caller): refuse DTD tricks before any
   XML parser runs.
2. :func:`extract_feed` (in a worker, see :class:`FeedParserPool`): feedparser, given the
   bytes wrapped in ``BytesIO`` (handed a bare ``bytes`` value that happens to name a file,
   feedparser 6.0 opens the file), then HTML to text and links made absolute (urljoin
   is costly enough to keep off the caller). It returns plain dicts of str, int,
   bool and None: that is all that crosses the process boundary (cheap and safe to
   pickle; feedparser's own objects and our dataclasses stay on their side).
3. :func:`build_result` (in the caller): identity rules and :class:`Observation` objects.

Identity: ``guid`` is the entry id, else its link, else ``sha256:`` of title and body.
Two entries of one feed with the same guid are both kept: the second becomes
``guid#2``, the third ``guid#3`` (in document order); nothing is merged or dropped.
"""

from __future__ import annotations

import calendar
import collections
import contextlib
import copy
import functools
import io
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import feedparser.mixin
import feedparser.util

from adapters.errors import AdapterError, UnusableInput
from adapters.htmltext import collapse, html_to_line, html_to_text, plain_to_text
from adapters.normalize import sha256_text
from adapters.observation import Observation
from adapters.xmlguard import check_prolog

__all__ = [
    "FeedParserPool",
    "FeedResult",
    "build_result",
    "extract_feed",
    "parse_feed",
    "parse_feed_inline",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedResult:
    observations: list[Observation]
    title: str | None
    ttl_seconds: int | None  # from <ttl>, which is in minutes
    bozo: bool  # feedparser found the document malformed but got entries out of it
    bozo_reason: str | None
    entries_published: list[datetime]  # aware UTC, published else updated, document order
    # What the pool's target worked out for each observation in the worker process
    # (the daemon's: each one's identity), in observation order; None if nothing.
    annotations: list[Any] | None = None


# -- 2. feedparser, in the worker ----------------------------------------------------------


def _memoize_base_joins() -> None:
    """Cache feedparser's base-URI join (a pure function of its two strings).

    At every start tag feedparser joins the current base URI with the tag's
    ``xml:base``, which is nearly always the same pair of strings: a ``urljoin`` and a
    ``urlparse`` per element, a quarter of its time on a typical 12 KB feed. The cache
    gives the same answers (``tests/unit/test_feed.py`` compares them); if a
    feedparser release moves the function, parsing is only slower.
    """
    join = getattr(feedparser.mixin, "make_safe_absolute_uri", None)
    if callable(join) and not hasattr(join, "cache_info"):
        feedparser.mixin.make_safe_absolute_uri = functools.lru_cache(maxsize=256)(join)


class _CopyForFeedparser:
    """Stands in for the ``copy`` module inside ``feedparser.mixin``.

    feedparser deep-copies its ``contentparams`` (a FeedParserDict of a few strings:
    type, language, base) at the end of every text element, about 40 times a feed and
    11% of its time on a typical 12 KB one. When every value is immutable this builds
    the same copy directly: a new FeedParserDict with the same items, each set through
    its ``__setitem__`` as ``copy.deepcopy`` sets them. Anything else goes to
    ``copy.deepcopy``; every other name is the real ``copy`` module's.
    """

    _IMMUTABLE = frozenset({str, int, float, bool, type(None)})

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if (
            memo is None
            and type(value) is feedparser.util.FeedParserDict
            and not vars(value)
            and set(map(type, dict.keys(value))) <= {str}
            and set(map(type, dict.values(value))) <= self._IMMUTABLE
        ):
            copied = feedparser.util.FeedParserDict()
            for key, item in dict.items(value):
                copied[key] = item
            return copied
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _copy_contentparams_directly() -> None:
    """Install :class:`_CopyForFeedparser` (the same output: ``tests/unit/test_feed.py``
    compares whole parses with and without it); a no-op if feedparser changes."""
    if getattr(feedparser.mixin, "copy", None) is copy:
        feedparser.mixin.copy = _CopyForFeedparser()


# FeedParserDict's own methods, before _plain_keys_as_dict (tests compare both)
FEEDPARSERDICT_METHODS = {
    name: feedparser.util.FeedParserDict.__dict__[name]
    for name in ("__getitem__", "get", "__contains__", "__setitem__")
}


def _plain_keys_as_dict() -> None:
    """Look up FeedParserDict's plain keys as a dict does.

    feedparser reads and writes its dicts about 1,700 times a feed, and every access
    first runs the checks for its special keys (``category``, ``enclosures``,
    ``license``, ``updated``, ``updated_parsed``) and its renamed ones (``keymap``):
    15% of its time on a typical 12 KB feed. For every other key those methods do what
    ``dict``'s do, so on a FeedParserDict itself (not a subclass, whose own
    ``__getitem__`` they would skip) a key outside that set goes straight to ``dict``;
    the rest still goes to feedparser's methods. (A key that equals a special one but
    hashes differently would take the plain path: no str does.) Installed for
    feedparser 6.0.x only, whose methods this was checked against
    (``tests/unit/test_feed.py`` compares whole parses and every special key); with
    another version, parsing is only slower.
    """
    cls = feedparser.util.FeedParserDict
    if not str(getattr(feedparser, "__version__", "")).startswith("6.0."):
        return
    special = frozenset({"category", "enclosures", "license", "updated", "updated_parsed"})
    special |= frozenset(cls.keymap)
    getitem, get, contains, setitem = FEEDPARSERDICT_METHODS.values()

    def __getitem__(self: dict[Any, Any], key: Any) -> Any:
        if key in special or type(self) is not cls:
            return getitem(self, key)
        return dict.__getitem__(self, key)

    def get_(self: dict[Any, Any], key: Any, default: Any = None) -> Any:
        if key in special or type(self) is not cls:
            return get(self, key, default)
        return dict.get(self, key, default)

    def __contains__(self: dict[Any, Any], key: Any) -> bool:
        if key in special or type(self) is not cls:
            return bool(contains(self, key))
        return dict.__contains__(self, key)

    def __setitem__(self: dict[Any, Any], key: Any, value: Any) -> None:
        if key in special or type(self) is not cls:
            setitem(self, key, value)
        else:
            dict.__setitem__(self, key, value)

    for name, method in (("__getitem__", __getitem__), ("get", get_),
                         ("__contains__", __contains__), ("__setitem__", __setitem__)):  # fmt: skip
        setattr(cls, name, method)


_memoize_base_joins()
_copy_contentparams_directly()
_plain_keys_as_dict()


def extract_feed(body: bytes, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Run feedparser and reduce its result to plain, picklable values."""
    response_headers = {k.lower(): v for k, v in headers.items()}
    response_headers.setdefault("content-location", url)  # base for relative links
    response_headers.setdefault("content-type", "application/xml")  # else bozo "no type"
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers=response_headers,
        resolve_relative_uris=False,  # links inside content: we keep only its text
        sanitize_html=False,  # the markup is discarded by html_to_text
    )
    exc = parsed.get("bozo_exception")
    return {
        "version": parsed.get("version") or "",
        "bozo": bool(parsed.get("bozo")),
        "bozo_reason": f"{type(exc).__name__}: {exc}" if exc is not None else None,
        "title": _detail_text(parsed.feed, "title") or None,
        "ttl": str(_raw(parsed.feed, "ttl") or ""),
        "entries": [_entry(e, url) for e in parsed.entries],
    }


def _raw(node: Any, key: str) -> Any:
    """What the document says. FeedParserDict.get maps a missing key to another one
    ("updated" to "published", with a DeprecationWarning); plain dict.get does not."""
    return dict.get(node, key)


def _entry(entry: Mapping[str, Any], feed_url: str) -> dict[str, Any]:
    link = (_raw(entry, "link") or "").strip()
    return {
        "id": (_raw(entry, "id") or "").strip(),
        "link": link,
        "url": _absolute_link(link, feed_url),  # urljoin is costly: done here, in parallel
        "title": _detail_text(entry, "title"),
        "body": _best_body(entry),
        "published": _timestamp(_raw(entry, "published_parsed")),
        "updated": _timestamp(_raw(entry, "updated_parsed")),
        "byline": _byline(entry),
    }


def _is_html(content_type: str | None) -> bool:
    return "html" in (content_type or "text/html")


def _detail_text(node: Mapping[str, Any], key: str) -> str:
    value = _raw(node, key) or ""
    detail = _raw(node, f"{key}_detail") or {}
    return html_to_line(value) if _is_html(detail.get("type")) else collapse(value)


def _best_body(entry: Mapping[str, Any]) -> str:
    """The longest text among content[] and summary (a summary is often just a teaser)."""
    contents = _raw(entry, "content") or []
    parts = [(_raw(c, "value") or "", _raw(c, "type")) for c in contents]
    if summary := _raw(entry, "summary"):
        parts.append((summary, (_raw(entry, "summary_detail") or {}).get("type")))
    texts = [html_to_text(v) if _is_html(t) else plain_to_text(v) for v, t in parts]
    return max(texts, key=len, default="")


def _byline(entry: Mapping[str, Any]) -> str | None:
    names = [collapse(_raw(a, "name") or "") for a in _raw(entry, "authors") or []]
    names = [n for n in names if n] or [collapse(_raw(entry, "author") or "")]
    return ", ".join(n for n in names if n) or None


def _timestamp(parsed: Any) -> int | None:
    try:
        return calendar.timegm(parsed) if parsed else None
    except (TypeError, ValueError, OverflowError):
        return None


# -- 3. back in the caller -------------------------------------------------------------------


def build_result(raw: Mapping[str, Any], *, url: str) -> FeedResult:
    """Observations from :func:`extract_feed`'s output; refuses what is not a feed.

    An entry with no id, link, title or text (what a truncated document leaves of its
    last item) carries nothing to record and is skipped.
    """
    entries = [e for e in raw["entries"] if any(e[k] for k in ("id", "link", "title", "body"))]
    if not entries and (raw["bozo"] or not raw["version"]):
        reason = raw["bozo_reason"] or "no feed format recognised and no entries"
        raise UnusableInput("not-a-feed", f"not a feed at {url}: {reason}")
    title = raw["title"]
    guids = _unique_guids(entries)
    observations = [_observation(e, g, title) for e, g in zip(entries, guids, strict=True)]
    dates = [_datetime(e["published"] or e["updated"]) for e in entries]
    return FeedResult(
        observations=observations,
        title=title,
        ttl_seconds=_ttl_seconds(raw["ttl"]),
        bozo=raw["bozo"],
        bozo_reason=raw["bozo_reason"],
        entries_published=[d for d in dates if d is not None],
        annotations=_annotations(raw, len(observations)),
    )


def _annotations(raw: Mapping[str, Any], count: int) -> list[Any] | None:
    found = raw.get("annotations")
    return list(found) if isinstance(found, list | tuple) and len(found) == count else None


def _unique_guids(entries: list[Mapping[str, Any]]) -> list[str]:
    used: set[str] = set()
    guids = []
    for entry in entries:
        base = entry["id"] or entry["link"] or _content_guid(entry)
        guid, n = base, 1
        while guid in used:
            n += 1
            guid = f"{base}#{n}"
        used.add(guid)
        guids.append(guid)
    return guids


def _content_guid(entry: Mapping[str, Any]) -> str:
    return "sha256:" + sha256_text(entry["title"] + "\n" + entry["body"])


def _observation(entry: Mapping[str, Any], guid: str, source: str | None) -> Observation:
    return Observation(
        title=entry["title"],
        body=entry["body"],
        url=entry["url"],
        source_name=source,
        published_at=_datetime(entry["published"]),
        updated_at=_datetime(entry["updated"]),
        byline=entry["byline"],
        guid=guid,
        channel="feed",
    )


def _absolute_link(link: str, feed_url: str) -> str | None:
    if not link:
        return None
    absolute = urljoin(feed_url, link)
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


def _datetime(timestamp: int | None) -> datetime | None:
    if timestamp is None:
        return None
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _ttl_seconds(ttl: str) -> int | None:
    ttl = ttl.strip()
    return int(ttl) * 60 if ttl.isdigit() and int(ttl) > 0 else None


# -- the worker pool -----------------------------------------------------------------------

Extractor = Callable[[bytes, str, Mapping[str, str]], dict[str, Any]]
_STARTUP_TIMEOUT = 60.0


def _worker_main(conn: Any, target: Extractor) -> None:
    """Loop of one worker process: a job is (body, url, headers); None means stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    conn.send(("ready",))
    with contextlib.suppress(EOFError):  # the parent went away: nothing left to do
        while (job := conn.recv()) is not None:
            conn.send(_answer(target, job))


def _answer(target: Extractor, job: tuple[bytes, str, dict[str, str]]) -> tuple[Any, ...]:
    try:
        return ("ok", target(*job))
    except UnusableInput as exc:
        return ("unusable", exc.reason, str(exc))
    except Exception as exc:  # per-job boundary: report it, keep serving
        return ("error", "parse-error", f"{type(exc).__name__}: {exc}")


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, target: Extractor) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child, target), name="storyline-feedparser", daemon=True
        )
        self.dead = False
        self.process.start()
        child.close()
        if not self.conn.poll(_STARTUP_TIMEOUT):
            self.kill()
            raise AdapterError(f"feed parser worker did not start in {_STARTUP_TIMEOUT:g} s")
        self.conn.recv()

    def stop(self) -> None:
        if self.dead:
            return
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(2.0)
        self.kill()

    def kill(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()
        self.process.close()


Job = tuple[bytes, str, dict[str, str]]


class _Call:
    """One parse request: the job, and the worker's answer once there is one. An empty
    answer means the job ran out of time; ``error`` is set when the pool could not
    run it at all."""

    __slots__ = ("answer", "done", "error", "job")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.answer: tuple[Any, ...] = ()
        self.error: Exception | None = None
        self.done = threading.Event()

    def finish(self, answer: tuple[Any, ...] = (), error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.done.set()


# Jobs kept in one worker's pipe: while it parses one, the next is already there, so it
# never waits for the polling process (whose threads share one GIL) to hand it work.
_DEPTH = 2
# ... but only jobs this small go in behind another: a send blocks when the socket's
# buffer (208 KiB by default on Linux) is full, and a feeder blocked there could not
# enforce the running job's time limit
_PIPELINED_MAX = 64 * 1024
# how often a feeder with room in the pipe looks for new jobs while one runs
_TOP_UP_EVERY = 0.002
# the answer for a job whose worker died under it (a parser crash on that feed)
_CRASHED = ("unusable", "parse-crash", "the feed parser process died on this feed")


class _Feeder:
    """The thread that owns one worker process: it sends jobs from the pool's queue,
    keeps up to ``_DEPTH`` of them in the pipe, and hands each answer to its caller.

    A job's wall-clock limit runs from when the worker can start it (sent to an idle
    worker, or the answer before it received), not from when it was queued. A job that
    overruns it gets no answer and its worker is killed; the jobs sent after it never
    started, and go first to the worker started in its place. A busy feeder takes a
    second job only while no other feeder is idle, and never a large one. Every job it
    takes is answered, whatever goes wrong.
    """

    def __init__(self, pool: FeedParserPool, worker: _Worker) -> None:
        self.pool, self.worker = pool, worker
        self.sent: collections.deque[_Call] = collections.deque()  # in the pipe, oldest first
        self.retry: collections.deque[_Call] = collections.deque()  # to send before the queue
        self.idle = False  # waiting for the pool's queue
        self.thread = threading.Thread(target=self._run, name="feed-parser-feeder", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._serve()
                break  # the pool is closed
            except Exception as exc:  # a bug: fail what it holds, start over, keep serving
                self.worker.kill()
                self._fail_all(
                    AdapterError(f"feed parser pool failed: {type(exc).__name__}: {exc}")
                )
        self.worker.stop()
        self._fail_all(AdapterError("feed parser pool stopped before this job"))

    def _fail_all(self, error: AdapterError) -> None:
        while self.sent or self.retry:
            (self.sent or self.retry).popleft().finish(error=error)

    def _serve(self) -> None:
        timeout, sent, retry = self.pool._timeout, self.sent, self.retry
        started = 0.0  # when sent[0] could start
        while True:
            if not sent:
                call = retry.popleft() if retry else self._wait_for_job()
                if call is None:
                    return  # the pool is closed and its queue empty
                if self._send(call):
                    started = time.monotonic()
                continue
            room = len(sent) < _DEPTH and self._top_up()
            conn, deadline = self.worker.conn, started + timeout
            try:
                left = deadline - time.monotonic()
                if conn.poll(max(0.0, min(left, _TOP_UP_EVERY) if room else left)):
                    answer: tuple[Any, ...] = conn.recv()
                elif time.monotonic() < deadline:
                    continue  # only a pause to top up the pipe
                else:
                    answer = conn.recv() if conn.poll(0) else ()  # out of time
            except (EOFError, OSError):  # the worker died during the head's job
                self._lost(answer=_CRASHED)
                continue
            except Exception as exc:  # an answer that cannot be read (MemoryError, ...)
                self._lost(AdapterError(f"unreadable answer from the feed parser: {exc}"))
                continue
            if not answer:
                self._lost()
                continue
            sent.popleft().finish(answer)
            started = time.monotonic()

    def _lost(self, error: AdapterError | None = None, answer: tuple[Any, ...] = ()) -> None:
        """The head job ran out of time (no answer), or its worker died (``answer``) or
        answered garbage (``error``): kill the worker, and send the jobs behind the head,
        which never started, to the next worker first."""
        self.worker.kill()
        head = self.sent.popleft()
        self.retry.extendleft(reversed(self.sent))
        self.sent.clear()
        head.finish(answer, error)

    def _wait_for_job(self) -> _Call | None:
        self.idle = True
        try:
            return self.pool._next(wait=True)
        finally:
            self.idle = False

    def _top_up(self) -> bool:
        """Send one more job behind the running one, if one may go there; whether there
        is still room in the pipe afterwards (worth looking again soon)."""
        call: _Call | None
        if self.retry:
            call = self.retry.popleft()
        elif any(f.idle for f in self.pool._feeders):
            return True  # an idle worker takes it sooner
        else:
            call = self.pool._next(wait=False)
            if call is None:
                return True
        if len(call.job[0]) > _PIPELINED_MAX:
            self.pool._queue.put(call)  # for the next worker that is free
            return False
        self._send(call)
        return len(self.sent) < _DEPTH

    def _send(self, call: _Call) -> bool:
        """Put ``call`` in the worker's pipe (``sent``); a dead worker is replaced, once.
        If it cannot be sent, ``call`` is answered with the reason."""
        for attempt in (1, 2):
            if self.worker.dead:
                if self.sent:  # the head's answer, or its loss, is read first
                    self.retry.appendleft(call)
                    return False
                try:
                    self.worker = _Worker(self.pool._ctx, self.pool._target)
                except Exception as exc:  # the check fails readably; later calls try again
                    call.finish(error=AdapterError(f"cannot start a feed parser worker: {exc}"))
                    return False
            try:
                self.worker.conn.send(call.job)
            except OSError as exc:  # the worker is gone
                self.worker.kill()
                if attempt == 2:
                    call.finish(error=AdapterError(f"feed parser worker refused the job: {exc}"))
                continue
            except Exception as exc:  # the job itself cannot be sent (pickling)
                call.finish(error=AdapterError(f"cannot hand this feed to a parser: {exc}"))
                return False
            self.sent.append(call)
            return True
        return False


class FeedParserPool:
    """Long-lived worker processes running feedparser under a wall-clock limit.

    Owned by the daemon (no module-level state); thread-safe: callers queue their job
    and wait for its answer. Each worker has a feeder thread (see :class:`_Feeder`); a
    worker that overruns ``timeout`` is killed and replaced. ``target`` is replaceable
    for tests and must be a module-level function (it is pickled by name into the
    worker).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float = 10.0,
        target: Extractor = extract_feed,
        context: str = "forkserver",  # never "fork": the daemon runs threads
    ) -> None:
        self._ctx = multiprocessing.get_context(context)
        self._timeout, self._target = timeout, target
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()  # None: stop
        self._closed = threading.Event()
        started = []
        try:
            for _ in range(workers or multiprocessing.cpu_count()):
                started.append(_Worker(self._ctx, target))
        except BaseException:
            for worker in started:
                worker.kill()
            raise
        self._feeders = [_Feeder(self, worker) for worker in started]

    def parse(self, body: bytes, url: str, headers: Mapping[str, str] | None = None) -> FeedResult:
        check_prolog(body, headers)
        return build_result(self._run((body, url, dict(headers or {})), url), url=url)

    def _run(self, job: Job, url: str) -> dict[str, Any]:
        if self._closed.is_set():
            raise AdapterError("feed parser pool is closed")
        call = _Call(job)
        self._queue.put(call)
        while not call.done.wait(0.5):
            if not any(f.thread.is_alive() for f in self._feeders):
                raise AdapterError("feed parser pool is closed")
        error, answer = call.error, call.answer
        del call  # a raised error must not keep the job's body alive through its frame
        if error is not None:
            raise error
        if not answer:
            raise UnusableInput(
                "parse-timeout", f"feed parsing at {url} exceeded {self._timeout:g} s"
            )
        if answer[0] != "ok":
            raise UnusableInput(answer[1], f"{answer[2]} (at {url})")
        return dict(answer[1])

    def _next(self, *, wait: bool) -> _Call | None:
        """The next queued call; None when there is none to wait for (``wait`` false, or
        the pool closed: its queue ends with one None per feeder)."""
        while True:
            try:
                return self._queue.get(timeout=0.5) if wait else self._queue.get_nowait()
            except queue.Empty:
                if not wait or self._closed.is_set():
                    return None

    def close(self) -> None:
        """Refuse new jobs; each worker stops once the jobs already queued are answered
        (an idle one at once: this waits up to a second in all for those)."""
        self._closed.set()
        for _ in self._feeders:
            self._queue.put(None)
        deadline = time.monotonic() + 1.0
        for feeder in self._feeders:
            feeder.thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FeedParserPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- entry points ------------------------------------------------------------------------------


def parse_feed_inline(
    body: bytes, *, url: str, headers: Mapping[str, str] | None = None
) -> FeedResult:
    """Parse in this process, with no time limit: for tests, benchmarks and trusted input."""
    check_prolog(body, headers)
    return build_result(extract_feed(body, url, headers or {}), url=url)


def parse_feed(
    body: bytes, *, url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> FeedResult:
    """Parse in a one-off worker process killed after ``timeout`` seconds.

    Starting a process costs far more than parsing: a long-running caller should own a
    :class:`FeedParserPool` and call its ``parse`` instead.
    """
    with FeedParserPool(workers=1, timeout=timeout) as pool:
        return pool.parse(body, url, headers)
