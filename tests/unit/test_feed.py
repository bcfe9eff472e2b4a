"""Feed bytes to observations: formats, identity rules, hostile input, the worker pool."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import feedparser.mixin
import feedparser.util
import pytest

from adapters.errors import AdapterError, UnusableInput
from adapters.feed import (
    FEEDPARSERDICT_METHODS,
    FeedParserPool,
    build_result,
    extract_feed,
    parse_feed,
    parse_feed_inline,
)
from adapters.htmltext import html_to_text
from adapters.xmlguard import check_prolog

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
FEED_URL = "https://feeds.example.com/feed.xml"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(name: str) -> Any:
    return parse_feed_inline(fixture(name), url=FEED_URL)


def refusal(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    with pytest.raises(UnusableInput) as info:
        parse_feed_inline(body, url=FEED_URL, headers=headers)
    return info.value.reason


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


# -- formats ---------------------------------------------------------------------------------


def test_rss2_entries() -> None:
    result = parse("rss2.xml")
    assert result.title == "The Example Times"
    assert result.ttl_seconds == 30 * 60
    assert not result.bozo and result.bozo_reason is None
    assert [o.title for o in result.observations] == [
        "Storm & flood warnings issued",
        "Minister resigns",
        "Markets close higher",
    ]
    first, second, third = result.observations
    assert first.guid == "example-times-1001"
    assert first.url == "https://news.example.com/world/2025/jun/03/storm-warnings"
    assert first.published_at == utc(2025, 6, 3, 7, 39, 21)
    assert first.updated_at is None  # RSS says nothing about updates
    assert first.byline == "Ana Silva"
    assert first.source_name == "The Example Times"
    assert first.channel == "feed"
    assert second.url == "https://feeds.example.com/politics/2025/jun/02/minister-resigns"
    assert third.guid == "https://news.example.com/business/2025/jun/02/markets"  # from <link>
    assert result.entries_published == [
        utc(2025, 6, 3, 7, 39, 21),
        utc(2025, 6, 2, 18, 0),
        utc(2025, 6, 2, 17, 30),
    ]


def test_rss2_html_content_becomes_clean_paragraphs() -> None:
    first, second, _ = parse("rss2.xml").observations
    assert first.paragraphs == [  # longest of content:encoded and description; no script/style
        "Forecasters issued amber warnings on Tuesday.",
        "Rivers are expected to rise\u00a0\u2014 residents were told to prepare.".replace(
            "\u00a0", " "
        ),
        "Schools will close early.",
    ]
    assert second.body == (
        "The minister resigned on Monday evening.\n\nA successor is expected this week."
    )


def test_rss1_entries() -> None:
    result = parse("rss1.xml")
    assert result.title == "RDF Gazette"
    assert result.ttl_seconds is None
    assert [(o.guid, o.url, o.title) for o in result.observations] == [
        ("https://rdf.example.org/a/1", "https://rdf.example.org/a/1", "First story"),
        ("https://rdf.example.org/a/2", "https://rdf.example.org/a/2", "Second story"),
    ]
    first = result.observations[0]
    assert first.body == "The first story's text."
    assert first.updated_at == utc(2025, 5, 30, 7, 15)  # dc:date
    assert first.byline == "Lee Chen"
    assert result.entries_published == [utc(2025, 5, 30, 7, 15), utc(2025, 5, 31, 10, 0)]


def test_atom_entries() -> None:
    result = parse("atom.xml")
    assert result.title == "Atom Daily"
    budget, no_id = result.observations
    assert budget.guid == "tag:atom.example.net,2025:budget"
    assert budget.url == "https://atom.example.net/stories/budget"  # xml:base applied
    assert budget.title == "Budget approved"  # type="html" title, markup stripped
    assert budget.published_at == utc(2025, 6, 1, 8, 0)
    assert budget.updated_at == utc(2025, 6, 1, 11, 30)
    assert budget.byline == "Sam Jones, Kim Lee"
    assert budget.paragraphs == [
        "Vote",
        "Parliament approved the budget by 312 votes to 290.",
        "Taxes unchanged",
        "Spending up 2%",
    ]
    assert no_id.body == "Plain paragraph one.\n\nParagraph two."  # xhtml content


_NESTED_BASES = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="/news/">
  <title>Bases</title>
  <entry xml:base="2026/">
    <id>story-1</id><title>Relative id and link</title>
    <link href="story-1.html"/><content type="html">&lt;p&gt;One&lt;/p&gt;</content>
  </entry>
  <entry xml:base="https://other.example.org/feeds/">
    <id>https://other.example.org/id/2</id><title>Absolute base</title>
    <link href="../story-2.html"/><summary>Two</summary>
  </entry>
  <entry xml:base="javascript:alert(1)//">
    <id>3</id><title>Unsafe base</title><link href="story-3.html"/><summary>Three</summary>
  </entry>
</feed>
"""

_RELATIVE_GUIDS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Guids</title>
  <item><guid>/items/1</guid><title>Permalink, no link</title><description>a</description></item>
  <item><guid isPermaLink="false">item-2</guid><title>Opaque guid</title><link>/2</link></item>
</channel></rss>
"""


def test_cached_base_joins_give_feedparsers_own_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """extract_feed caches feedparser's base-URI join; the output must not change."""

    cached = feedparser.mixin.make_safe_absolute_uri
    assert hasattr(cached, "cache_info"), "the cache is not installed"
    bodies = [p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))]
    bodies += [_NESTED_BASES, _RELATIVE_GUIDS]
    headers = [{}, {"Content-Location": "https://feeds.example.com/sub/feed.xml"}]

    def outputs() -> list[dict[str, Any]]:
        return [extract_feed(b, FEED_URL, h) for b in bodies for h in headers]

    with_cache = outputs()
    monkeypatch.setattr(feedparser.mixin, "make_safe_absolute_uri", cached.__wrapped__)
    assert outputs() == with_cache
    nested = parse_feed_inline(_NESTED_BASES, url=FEED_URL)
    assert [o.url for o in nested.observations] == [
        "https://feeds.example.com/news/2026/story-1.html",
        "https://other.example.org/story-2.html",
        "https://feeds.example.com/news/story-3.html",
    ]
    assert nested.observations[0].guid == "https://feeds.example.com/news/2026/story-1"


def test_direct_contentparams_copies_give_feedparsers_own_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """extract_feed replaces feedparser's deep copies of its content parameters; every
    parse, not only what we keep of it, must come out the same."""
    import copy

    assert feedparser.mixin.copy is not copy, "the replacement is not installed"
    bodies = [p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))]
    bodies += [_NESTED_BASES, _RELATIVE_GUIDS]
    headers = {"content-location": FEED_URL, "content-type": "application/xml"}

    def parses() -> list[Any]:
        out = [feedparser.parse(io.BytesIO(b), response_headers=headers) for b in bodies]
        for parsed in out:  # an exception equals only itself: compare what it says
            if "bozo_exception" in parsed:
                parsed["bozo_exception"] = repr(parsed["bozo_exception"])
        return out

    direct = parses()
    monkeypatch.setattr(feedparser.mixin, "copy", copy)
    assert parses() == direct
    details = [e["title_detail"] for p in direct for e in p.entries if "title_detail" in e]
    assert len(details) > 20 and all(type(d) is feedparser.util.FeedParserDict for d in details)
    assert len({id(d) for d in details}) == len(details)  # copies, not one shared dict


def test_plain_key_lookups_give_feedparsers_own_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """extract_feed makes FeedParserDict look up plain keys as a dict does: every parse,
    and every lookup of a special or renamed key, must come out the same."""
    cls = feedparser.util.FeedParserDict
    assert cls.__getitem__ is not FEEDPARSERDICT_METHODS["__getitem__"], "not installed"
    bodies = [p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))]
    bodies += [_NESTED_BASES, _RELATIVE_GUIDS, _SPECIAL_KEYS]
    headers = {"content-location": FEED_URL, "content-type": "application/xml"}
    keys = ["category", "enclosures", "license", "updated", "updated_parsed", *cls.keymap]
    keys += ["title", "summary", "links", "tags", "published", "href", "nothing", ("t",), ["u"]]

    def outcome(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except (KeyError, TypeError) as exc:
            return type(exc).__name__

    def lookups(node: Any) -> list[Any]:
        out: list[Any] = []
        for key in keys:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out += [outcome(node.__getitem__, key), outcome(node.get, key, "default")]
                out += [outcome(node.__contains__, key), len(caught)]
        return out

    def observed() -> list[Any]:
        parses = [feedparser.parse(io.BytesIO(b), response_headers=headers) for b in bodies]
        out: list[Any] = []
        for parsed in parses:
            parsed["bozo_exception"] = repr(parsed.get("bozo_exception"))
            out += [parsed, lookups(parsed.feed), *(lookups(e) for e in parsed.entries)]
        made = cls()
        for key in ("description", "url", "channel", "title", "updated"):
            made[key] = key.upper()
        made.setdefault("items", [])
        return [*out, dict(made)]

    class Upper(cls):  # type: ignore[misc]
        def __getitem__(self, key: Any) -> Any:
            return str(super().__getitem__(key)).upper()

    def subclassed() -> list[Any]:
        node = Upper(title="quiet")
        return [node.get("title"), node.get("nothing", "none"), "title" in node]

    fast = observed(), subclassed()
    for name, method in FEEDPARSERDICT_METHODS.items():
        monkeypatch.setattr(cls, name, method)
    assert (observed(), subclassed()) == fast
    assert fast[1] == ["QUIET", "none", True]  # a subclass's own __getitem__ is honoured
    fast = fast[0]
    special = fast[-1]
    assert special == {"summary": "DESCRIPTION", "href": "URL", "feed": "CHANNEL",
                       "title": "TITLE", "updated": "UPDATED", "entries": []}  # fmt: skip


_SPECIAL_KEYS = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Special keys</title>
  <entry><id>1</id><title>Enclosure, licence, tags</title>
    <published>2026-11-20T10:00:00Z</published>
    <link rel="enclosure" href="https://x.example/a.mp3" type="audio/mpeg" length="10"/>
    <link rel="license" href="https://creativecommons.org/licenses/by/4.0/"/>
    <category term="politics"/><category term="europe"/><summary>Text</summary>
  </entry>
  <entry><id>2</id><title>Updated only</title><updated>2026-11-21T10:00:00Z</updated></entry>
</feed>
"""


def test_html_to_text() -> None:
    html = (
        "<div>Intro &amp; more</div><p>One<br>two</p><script>var x = '<p>';</script>"
        "<style>p {}</style><p>  spaced \n out  </p><p></p>&eacute;t&eacute;"
    )
    assert html_to_text(html) == "Intro & more\n\nOne\n\ntwo\n\nspaced out\n\nété"


# -- identity ----------------------------------------------------------------------------------


def test_missing_guids_fall_back_to_link_then_content_hash() -> None:
    linked, orphan = parse("no-guids.xml").observations
    assert linked.guid == "https://sparse.example.com/only-link"
    assert orphan.guid is not None and orphan.guid.startswith("sha256:")
    assert orphan.url is None
    again = parse("no-guids.xml").observations[1]
    assert again.guid == orphan.guid  # stable across polls


def test_duplicate_guids_kept_and_disambiguated() -> None:
    result = parse("duplicate-guids.xml")
    assert [(o.guid, o.title) for o in result.observations] == [
        ("same", "First"),
        ("same#2", "Second"),
        ("same#3", "Third"),
        ("other", "Other"),
    ]


# -- malformed input ---------------------------------------------------------------------------


def test_wrong_declared_charset_recorded_as_bozo() -> None:
    result = parse("latin1-declared-utf8.xml")
    assert result.bozo
    assert result.bozo_reason is not None and "declared as utf-8" in result.bozo_reason
    assert result.title == "Le Café du Coin"
    (entry,) = result.observations
    assert entry.title == "Crème brûlée à la une"
    assert entry.body == "Un café très apprécié."


def test_truncated_feed_with_entries_kept_with_bozo() -> None:
    result = parse("truncated-with-entries.xml")
    assert result.bozo and result.bozo_reason and "no element found" in result.bozo_reason
    assert [o.guid for o in result.observations] == ["cut-1"]  # the cut-off item is empty


@pytest.mark.parametrize("name", ["truncated.xml", "html-page.html"])
def test_not_a_feed(name: str) -> None:
    assert refusal(fixture(name)) == "not-a-feed"


@pytest.mark.parametrize("body", [b"", b"   \n", b"/etc/passwd", b"file:///etc/passwd"])
def test_empty_or_path_like_body_is_not_a_feed(body: bytes) -> None:
    # Handed bare bytes that name a file, feedparser would read the file: never here.
    assert refusal(body) == "not-a-feed"


def test_not_a_feed_message_names_url_and_bozo_reason() -> None:
    with pytest.raises(UnusableInput) as info:
        parse_feed_inline(fixture("truncated.xml"), url=FEED_URL)
    assert FEED_URL in str(info.value) and "no element found" in str(info.value)


def test_empty_but_valid_feed_accepted() -> None:
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    result = parse_feed_inline(body, url=FEED_URL)
    assert result.observations == [] and result.title == "Quiet"


# -- entity attacks, refused before feedparser ---------------------------------------------------


@pytest.mark.parametrize("name", ["billion-laughs.xml", "external-entity.xml", "external-dtd.xml"])
def test_entity_attacks_refused(name: str) -> None:
    assert refusal(fixture(name)) == "xml-entities"


def test_quadratic_blowup_refused() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + b"A" * 100_000 + b'">]>'
        b"<rss><channel><title>" + b"&a;" * 2000 + b"</title></channel></rss>"
    )
    assert refusal(body) == "xml-entities"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_entity_attack_in_utf16_or_32_refused(encoding: str) -> None:
    text = (
        fixture("billion-laughs.xml").decode().replace('"1.0"?>', f'"1.0" encoding="{encoding}"?>')
    )
    assert refusal(text.encode(encoding)) == "xml-entities"


def test_entity_hidden_in_utf7_refused() -> None:
    # feedparser honours encoding="utf-7" and would expand &a; to "pwned".
    def utf7(text: str) -> bytes:
        return b"+" + base64.b64encode(text.encode("utf-16-be")).rstrip(b"=") + b"-"

    body = (
        b'<?xml version="1.0" encoding="utf-7"?>' + utf7('<!DOCTYPE rss [<!ENTITY a "')
        + b'pwned' + utf7('">]>') + b'<rss version="2.0"><channel><title>' + utf7("&a;")
        + b"</title></channel></rss>"
    )  # fmt: skip
    assert b"ENTITY" not in body
    assert refusal(body) == "xml-entities"


def test_entity_after_element_lookalike_in_comment_refused() -> None:
    body = b'<?xml version="1.0"?><!DOCTYPE rss [<!-- <a --> <!ENTITY b "x">]><rss/>'
    assert refusal(body) == "xml-entities"


def test_entity_declared_charset_from_http_header_considered() -> None:
    body = '<!DOCTYPE rss [<!ENTITY a "x">]><rss/>'.encode("utf-16-le")
    with pytest.raises(UnusableInput):
        check_prolog(body, {"Content-Type": "application/rss+xml; charset=utf-16-le"})


def test_netscape_rss091_doctype_accepted() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss PUBLIC '
        b'"-//Netscape Communications//DTD RSS 0.91//EN" '
        b'"http://my.netscape.com/publish/formats/rss-0.91.dtd">\n<rss version="0.91"><channel>'
        b"<title>Old</title><item><title>Item</title><link>https://old.example.com/1</link>"
        b"</item></channel></rss>"
    )
    result = parse_feed_inline(body, url=FEED_URL)
    assert [o.title for o in result.observations] == ["Item"]


# -- the worker pool -----------------------------------------------------------------------------


def slow_extract(body: bytes, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Stands in for a feedparser ReDoS: hangs on b"slow"."""
    if body == b"slow":
        time.sleep(60)
    return extract_feed(body, url, headers)


def test_pool_gives_the_same_result_as_inline() -> None:
    with FeedParserPool(workers=2, timeout=10) as pool:
        for name in ("rss2.xml", "rss1.xml", "atom.xml", "duplicate-guids.xml"):
            assert pool.parse(fixture(name), FEED_URL) == parse(name)


def test_pool_reports_refusals() -> None:
    with FeedParserPool(workers=1, timeout=10) as pool:
        with pytest.raises(UnusableInput) as info:
            pool.parse(fixture("html-page.html"), FEED_URL)
        assert info.value.reason == "not-a-feed"
        with pytest.raises(UnusableInput) as info:
            pool.parse(fixture("billion-laughs.xml"), FEED_URL)
        assert info.value.reason == "xml-entities"


def test_pool_timeout_kills_worker_and_pool_stays_usable() -> None:
    with FeedParserPool(workers=1, timeout=1.0, target=slow_extract) as pool:
        started = time.monotonic()
        with pytest.raises(UnusableInput) as info:
            pool.parse(b"slow", FEED_URL)
        assert time.monotonic() - started < 3.0
        assert info.value.reason == "parse-timeout"
        assert FEED_URL in str(info.value)
        assert len(pool.parse(fixture("rss2.xml"), FEED_URL).observations) == 3


def crashing_extract(body: bytes, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Stands in for a parser that takes its process down: on b"crash"."""
    if body == b"crash":
        time.sleep(0.5)  # the next job is in the pipe by then
        os._exit(3)
    return slow_extract(body, url, headers)


def _explode() -> None:
    raise ValueError("this answer cannot be read back")


class _Unreadable:
    """Pickles in the worker; unpickling it in the caller raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ())


def odd_extract(body: bytes, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """b"pause:" + feed: that feed after 1.5 s; b"garbage": an answer the caller cannot
    read; every feed is titled with the pid of the worker that parsed it."""
    if body.startswith(b"pause:"):
        time.sleep(1.5)
        body = body[len(b"pause:") :]
    if body == b"garbage":
        return {"x": _Unreadable()}
    raw = extract_feed(body, url, headers)
    raw["title"] = str(os.getpid())
    return raw


def _in_threads(pool: FeedParserPool, bodies: list[bytes]) -> list[Any]:
    """Parse each body on its own thread, all at once; each one's result or error."""
    results: list[Any] = [None] * len(bodies)

    def one(i: int) -> None:
        try:
            results[i] = pool.parse(bodies[i], FEED_URL)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # in this order
    for thread in threads:
        thread.join(30)
    return results


def _titled(title: str) -> bytes:
    return fixture("rss2.xml").replace(b"The Example Times", title.encode())


def test_pool_hands_each_caller_its_own_answer() -> None:
    """One worker, jobs kept two deep in its pipe: every answer goes to its caller."""
    titles = [f"Feed {i}" for i in range(12)]
    with FeedParserPool(workers=1, timeout=10) as pool:
        results = _in_threads(pool, [_titled(t) for t in titles])
    assert [r.title for r in results] == titles


def test_jobs_queued_behind_a_hung_one_are_not_failed_with_it() -> None:
    big = _titled("Big") + b"<!--" + b"x" * 1_000_000 + b"-->"  # more than a socket holds
    with FeedParserPool(workers=1, timeout=1.0, target=slow_extract) as pool:
        started = time.monotonic()
        hung, large, small = _in_threads(pool, [b"slow", big, _titled("Small")])
        assert time.monotonic() - started < 10  # the limit held: no wait on the 60 s hang
    assert isinstance(hung, UnusableInput) and hung.reason == "parse-timeout"
    assert small.title == "Small" and large.title == "Big"


def test_a_worker_that_dies_fails_only_its_own_job() -> None:
    with FeedParserPool(workers=1, timeout=5.0, target=crashing_extract) as pool:
        crashed, after = _in_threads(pool, [b"crash", _titled("After")])
        assert isinstance(crashed, UnusableInput) and crashed.reason == "parse-crash"
        assert FEED_URL in str(crashed)
        assert after.title == "After"
        assert pool.parse(_titled("Later"), FEED_URL).title == "Later"


def test_an_idle_worker_takes_a_job_before_a_busy_one_queues_it() -> None:
    feed = fixture("rss2.xml")
    with FeedParserPool(workers=2, timeout=10, target=odd_extract) as pool:
        for _ in range(4):
            paused, other = _in_threads(pool, [b"pause:" + feed, feed])
            assert other.title != paused.title  # not queued behind the paused job


def test_a_job_that_cannot_be_sent_or_an_unreadable_answer_fails_only_that_job() -> None:
    with FeedParserPool(workers=1, timeout=10, target=odd_extract) as pool:
        with pytest.raises(AdapterError, match="cannot hand this feed"):
            pool.parse(fixture("rss2.xml"), FEED_URL, {"x-lock": threading.Lock()})  # type: ignore[dict-item]
        with pytest.raises(AdapterError, match="unreadable answer"):
            pool.parse(b"garbage", FEED_URL)
        assert pool.parse(fixture("rss2.xml"), FEED_URL).title.isdigit()


def test_a_closed_pool_refuses_jobs_and_stops_its_workers() -> None:
    pool = FeedParserPool(workers=2, timeout=5.0)
    processes = [f.worker.process for f in pool._feeders]
    assert pool.parse(_titled("Before"), FEED_URL).title == "Before"
    pool.close()
    with pytest.raises(AdapterError, match="closed"):
        pool.parse(_titled("After"), FEED_URL)
    assert all(not f.thread.is_alive() for f in pool._feeders)
    assert all(f.worker.dead for f in pool._feeders) and len(processes) == 2


def test_parse_feed_one_shot() -> None:
    assert parse_feed(fixture("atom.xml"), url=FEED_URL, timeout=10).title == "Atom Daily"


# -- identities worked out in the parser processes ------------------------------------------


def test_parser_processes_identify_entries_as_the_poller_would() -> None:
    """The daemon's parser processes work out each entry's identity beside the parse;
    the poller must get exactly what it would have worked out itself."""
    from daemon.feedwork import extract_and_identify
    from daemon.ingest import identify, identify_all

    bodies = [p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))] + [_RELATIVE_GUIDS]
    with FeedParserPool(workers=1, timeout=10, target=extract_and_identify) as pool:
        identified = 0
        for body in bodies:
            try:
                parsed = pool.parse(body, FEED_URL)
            except UnusableInput:
                with pytest.raises(UnusableInput):
                    parse_feed_inline(body, url=FEED_URL)
                continue
            assert parsed.annotations is not None
            mine = [identify(o) for o in parsed.observations]
            assert identify_all(parsed.observations, parsed.annotations) == mine
            identified += len(mine)
    assert identified >= 15


def test_annotations_that_do_not_fit_the_entries_are_dropped() -> None:
    raw = extract_feed((FIXTURES / "rss2.xml").read_bytes(), FEED_URL, {})
    count = len(parse_feed_inline((FIXTURES / "rss2.xml").read_bytes(), url=FEED_URL).observations)
    assert (
        build_result({**raw, "annotations": ["x"] * count}, url=FEED_URL).annotations
        == ["x"] * count
    )
    assert (
        build_result({**raw, "annotations": ["x"] * (count + 1)}, url=FEED_URL).annotations is None
    )
    assert build_result(raw, url=FEED_URL).annotations is None
