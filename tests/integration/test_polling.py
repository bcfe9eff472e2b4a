"""Feeds polled from a real HTTP server on 127.0.0.1, with an injected clock."""

from __future__ import annotations

import gzip
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from daemon.config import SourceEntry, from_mapping
from daemon.service import Services
from tests.httpserver import Reply, Server, rss, running

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def server() -> Iterator[Server]:
    with running() as srv:
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    raw = {
        "http": {
            "allow_private_networks": True,
            "per_host_min_delay": 0.0,
            "deadline": 2.0,
            "timeout_read": 1.0,
            "max_body_bytes": 2_000_000,
        },
        "scheduler": {"parser_processes": 1, "workers": 8, "parse_timeout": 5.0},
    }
    made = Services(from_mapping(raw, base_dir=tmp_path), clock=clock)
    made.prepare()
    yield made
    made.close()


def add(services: Services, server: Server, path: str, clock: Clock) -> str:
    return services.registry.add(
        SourceEntry(kind="feed", url=server.url(path), name=path), origin="cli", now=clock()
    )


def query(services: Services, sql: str) -> list[tuple[object, ...]]:
    services.projector.catch_up()
    with services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def entries(
    n: int, *, body: str = "Body", start: datetime = T0, site: str = "news.example"
) -> list[tuple[str, str, str, str]]:
    return [
        (
            f"http://{site}/{i}",
            f"Story {i}",
            f"{body} {i}.",
            format_datetime(start - timedelta(hours=i)),
        )
        for i in range(n)
    ]


def test_entries_become_articles_and_a_second_poll_appends_nothing(
    services: Services, server: Server, clock: Clock
) -> None:
    server.serve(
        "/etag.xml",
        lambda h: (
            Reply(304)
            if h.headers.get("If-None-Match") == '"v1"'
            else Reply(200, rss(entries(3)), {"ETag": '"v1"'})
        ),
    )
    server.serve("/plain.xml", Reply(200, rss(entries(2, site="other.example"))))
    sid = add(services, server, "/etag.xml", clock)
    add(services, server, "/plain.xml", clock)

    first = services.poller.run_cycle()
    assert first.outcomes == {"new": 2}
    titles = query(services, f"SELECT title FROM articles WHERE source_id = '{sid}'")
    assert sorted(t for (t,) in titles) == ["Story 0", "Story 1", "Story 2"]
    head = query(services, "SELECT max(position) FROM events")

    second = services.poller.run_cycle(all_sources=True)
    assert second.outcomes == {"not-modified": 1, "unchanged": 1}
    assert query(services, "SELECT max(position) FROM events") == head
    logged = query(services, "SELECT source_id, outcome FROM fetch_log ORDER BY id")
    by_source: dict[object, list[object]] = {}
    for source_id, outcome in logged:
        by_source.setdefault(source_id, []).append(outcome)
    assert by_source[sid] == ["new", "not-modified"]
    assert sorted(by_source.values()) == [["new", "not-modified"], ["new", "unchanged"]]


def test_articles_are_visible_when_the_cycle_returns(
    services: Services, server: Server, clock: Clock
) -> None:
    """The poller projects each batch it appends: no catch-up needed afterwards."""
    server.serve("/feed.xml", Reply(200, rss(entries(3))))
    add(services, server, "/feed.xml", clock)
    services.projector.catch_up()  # the source.added event

    report = services.poller.run_cycle()
    assert report.outcomes == {"new": 1} and not report.unprojected
    assert services.projector.lag()["articles"] == 0
    with services.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM articles")).scalar() == 3


def test_a_projection_failure_in_the_cycle_loses_nothing(
    services: Services, server: Server, clock: Clock
) -> None:
    server.serve("/feed.xml", Reply(200, rss(entries(2))))
    add(services, server, "/feed.xml", clock)

    def broken(_events: object) -> int:
        raise RuntimeError("projection unavailable")

    services.poller.project = broken
    report = services.poller.run_cycle()
    assert report.outcomes == {"new": 1}  # appended all the same
    assert report.unprojected  # so the daemon's main loop catches up
    assert services.projector.lag()["articles"] > 0
    assert sorted(t for (t,) in query(services, "SELECT title FROM articles")) == [
        "Story 0",
        "Story 1",
    ]


def test_changed_entry_text_is_a_revision(services: Services, server: Server, clock: Clock) -> None:
    feed = {"body": rss(entries(2))}
    server.serve("/f.xml", lambda _h: Reply(200, feed["body"]))
    add(services, server, "/f.xml", clock)
    services.poller.run_cycle()
    changed = entries(2)
    changed[0] = (changed[0][0], changed[0][1], "Body 0, now with a correction.", changed[0][3])
    feed["body"] = rss(changed)
    clock.advance(3600)
    report = services.poller.run_cycle(all_sources=True)
    assert report.outcomes == {"revised": 1}
    rows = query(
        services,
        "SELECT kind, previous_check_at, observed_at FROM article_versions WHERE version = 2",
    )
    assert len(rows) == 1 and rows[0][0] == "substantive"
    assert rows[0][1] is not None  # the edit happened after the previous check


def test_feed_interval_follows_publishing_frequency_and_server_hints(
    services: Services, server: Server, clock: Clock
) -> None:
    """7 days / entries in the last week, clamped to [5 min, 24 h], lengthened by ttl."""
    busy = entries(20, start=T0)  # 20 in the last day -> 7d/20 = 8.4 h
    server.serve("/busy.xml", Reply(200, rss(busy)))
    flood = [
        (f"http://x/{i}", f"F{i}", "b", format_datetime(T0 - timedelta(minutes=i)))
        for i in range(2100)
    ]
    server.serve("/flood.xml", Reply(200, rss(flood)))
    server.serve("/old.xml", Reply(200, rss(entries(5, start=T0 - timedelta(days=30)))))
    server.serve("/ttl.xml", Reply(200, rss(flood, ttl=60)))
    ids = {
        p: add(services, server, p, clock)
        for p in ("/busy.xml", "/flood.xml", "/old.xml", "/ttl.xml")
    }
    services.poller.run_cycle()
    got = dict(query(services, "SELECT source_id, interval_seconds FROM source_state"))
    assert got[ids["/busy.xml"]] == pytest.approx(7 * 86400 / 20)
    assert got[ids["/flood.xml"]] == 300.0  # clamped up to 5 minutes
    assert got[ids["/old.xml"]] == 86400.0  # nothing this week: the 24 h ceiling
    assert got[ids["/ttl.xml"]] == 3600.0  # <ttl>60</ttl> lengthens it


def _serve_feeds(
    services: Services, server: Server, clock: Clock, rates: list[int]
) -> dict[str, float]:
    """Feeds publishing ``rate`` entries a week; returns the interval the rules give."""
    intervals = {}
    for i, per_week in enumerate(rates):
        spacing = 604800 / max(per_week, 1)
        items = [
            (
                f"http://n{i}/{k}",
                f"S{i}-{k}",
                "b",
                format_datetime(T0 - timedelta(seconds=k * spacing)),
            )
            for k in range(per_week)
        ] or entries(3, start=T0 - timedelta(days=60))
        server.serve(f"/feed{i}.xml", Reply(200, rss(items)))
        add(services, server, f"/feed{i}.xml", clock)
        expected = 604800 / per_week if per_week else 86400.0
        intervals[f"/feed{i}.xml"] = min(max(expected, 300.0), 86400.0)
    return intervals


def _simulate(
    services: Services, server: Server, clock: Clock, paths: list[str], *, ticks: int, tick: float
) -> dict[str, list[float]]:
    """Run the dispatch ``ticks`` times, ``tick`` seconds of fake time apart; returns the
    offsets (seconds from the start) at which each feed was fetched."""
    seen: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(ticks):
        before = dict(server.hits)
        services.poller.run_cycle()
        for path in paths:
            if server.hits[path] > before.get(path, 0):
                seen[path].append((clock() - T0).total_seconds())
        clock.advance(tick)
    return seen


def test_twenty_feeds_polled_on_schedule_for_ten_minutes_of_accelerated_time(
    services: Services, server: Server, clock: Clock
) -> None:
    rates = [2100, 400, 100, 20, 0] * 4  # 5 min, 25 min, 1.7 h, 8.4 h, 24 h
    intervals = _serve_feeds(services, server, clock, rates)
    seen = _simulate(services, server, clock, list(intervals), ticks=121, tick=5.0)
    for path, interval in intervals.items():
        expected = [0.0, 300.0, 600.0] if interval == 300.0 else [0.0]
        assert seen[path] == expected, (path, interval)
    stored = dict(query(services, "SELECT url, interval_seconds FROM sources"))
    for path, interval in intervals.items():
        assert stored[server.url(path)] == pytest.approx(interval), path


def test_a_day_of_accelerated_time_keeps_every_interval_and_skips_nothing(
    services: Services, server: Server, clock: Clock
) -> None:
    intervals = _serve_feeds(services, server, clock, [400, 100, 20, 0])
    seen = _simulate(services, server, clock, list(intervals), ticks=24 * 60 + 1, tick=60.0)
    for path, interval in intervals.items():
        gaps = [b - a for a, b in zip(seen[path], seen[path][1:], strict=False)]
        # each check comes at the first one-minute tick after the interval elapsed
        assert all(interval <= g < interval + 60 for g in gaps), (path, gaps)
        assert len(seen[path]) == 1 + int(86400 // (60 * -(-interval // 60))), path


def test_failures_back_off_exponentially_and_are_never_dropped(
    services: Services, server: Server, clock: Clock
) -> None:
    server.serve("/down.xml", Reply(500, b"oops"))
    server.serve("/ok.xml", Reply(200, rss(entries(1))))
    sid = add(services, server, "/down.xml", clock)
    add(services, server, "/ok.xml", clock)
    delays = []
    for _ in range(12):
        services.poller.run_cycle()
        ((nxt, failures, status),) = query(
            services,
            "SELECT next_check_at, consecutive_failures, status FROM sources "
            f"WHERE source_id = '{sid}'",
        )
        delays.append(
            (datetime.fromisoformat(str(nxt).replace("Z", "+00:00")) - clock()).total_seconds()
        )
        clock.now = datetime.fromisoformat(str(nxt).replace("Z", "+00:00"))
    assert delays[:5] == [300, 600, 1200, 2400, 4800]
    assert max(delays) == 86400  # capped at 24 h, and still scheduled
    assert (failures, status) == (12, "backing-off")
    assert server.hits["/down.xml"] == 12


def test_gone_retires_a_source_and_429_retry_after_is_honoured(
    services: Services, server: Server, clock: Clock
) -> None:
    server.serve("/gone.xml", Reply(410))
    server.serve("/busy.xml", Reply(429, b"", {"Retry-After": "7200"}))
    gone, busy = (
        add(services, server, "/gone.xml", clock),
        add(services, server, "/busy.xml", clock),
    )
    services.poller.run_cycle()
    state = dict(query(services, "SELECT source_id, status FROM sources"))
    assert state[gone] == "gone"
    ((nxt,),) = query(services, f"SELECT next_check_at FROM sources WHERE source_id = '{busy}'")
    assert str(nxt).startswith((T0 + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    clock.advance(10 * 86400)
    services.poller.run_cycle()
    assert server.hits["/gone.xml"] == 1


def test_every_source_failing_at_once_is_our_network_not_theirs(
    services: Services, server: Server, clock: Clock
) -> None:
    sids = [add(services, server, f"/f{i}.xml", clock) for i in range(3)]
    server.httpd.shutdown()
    server.httpd.server_close()  # connection refused for everyone
    report = services.poller.run_cycle()
    assert report.network_down
    failures = query(services, "SELECT consecutive_failures, status FROM sources")
    assert failures == [(0, "active")] * len(sids)
    assert query(services, "SELECT count(*) FROM fetch_log WHERE outcome = 'failed'") == [(3,)]


def _slow(handler: object) -> Reply:
    time.sleep(3)
    return Reply(200, b"<rss/>")


BAD_FEEDS: dict[str, tuple[Reply, str]] = {
    "/malformed.xml": (Reply(200, b"<rss><channel><title>x</title><item><title>y"), "not a feed"),
    "/html.xml": (
        Reply(200, b"<html><body><p>Hello</p></body></html>", {"Content-Type": "text/html"}),
        "not a feed",
    ),
    "/empty.xml": (Reply(200, b""), "not a feed"),
    "/missing.xml": (Reply(404, b"no"), "404"),
    "/error.xml": (Reply(500, b"boom"), "500"),
    "/bomb.xml": (
        Reply(200, gzip.compress(b"\0" * 50_000_000), {"Content-Encoding": "gzip"}),
        "exceeds",
    ),
    "/big.xml": (Reply(200, b"<rss>" + b" " * 3_000_000 + b"</rss>"), "exceeds"),
    "/laughs.xml": (
        Reply(
            200,
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">'
            b'<!ENTITY b "&a;&a;&a;">]><rss>&b;</rss>',
        ),
        "entities",
    ),
    "/xxe.xml": (
        Reply(
            200,
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM '
            b'"file:///etc/passwd">]><rss>&x;</rss>',
        ),
        "entit",
    ),
    "/loop.xml": (Reply(302, b"", {"Location": "/loop.xml"}), "redirect"),
    "/tofile.xml": (Reply(302, b"", {"Location": "file:///etc/passwd"}), "file"),
}


def test_bad_feeds_fail_readably_and_the_good_one_is_still_polled(
    services: Services, server: Server, clock: Clock
) -> None:
    for path, (reply, _) in BAD_FEEDS.items():
        server.serve(path, reply)
    server.serve("/slow.xml", _slow)
    server.serve("/good.xml", Reply(200, rss(entries(2))))
    ids = {path: add(services, server, path, clock) for path in [*BAD_FEEDS, "/slow.xml"]}
    good = add(services, server, "/good.xml", clock)
    report = services.poller.run_cycle()
    assert report.outcomes["new"] == 1
    rows = {
        sid: (status, error, failures)
        for sid, status, error, failures in query(
            services, "SELECT source_id, status, last_error, consecutive_failures FROM sources"
        )
    }
    assert rows[good][0] == "active"
    for path, (_, needle) in BAD_FEEDS.items():
        status, error, failures = rows[ids[path]]
        assert status == "backing-off" and failures == 1, path
        assert needle in str(error), (path, error)
    assert rows[ids["/slow.xml"]][0] == "backing-off"
    assert "deadline" in str(rows[ids["/slow.xml"]][1]) or "timed out" in str(
        rows[ids["/slow.xml"]][1]
    )
    logged = query(services, "SELECT count(*) FROM fetch_log WHERE outcome = 'failed'")
    assert logged == [(len(BAD_FEEDS) + 1,)]


def test_redirect_to_a_private_address_is_refused_with_the_guard_on(
    tmp_path: Path, server: Server, clock: Clock
) -> None:
    raw = {"http": {"allow_private_networks": False, "per_host_min_delay": 0.0}}
    guarded = Services(from_mapping(raw, base_dir=tmp_path), clock=clock)
    guarded.prepare()
    try:
        server.serve("/r.xml", Reply(302, b"", {"Location": "http://10.0.0.1/feed.xml"}))
        sid = add(guarded, server, "/r.xml", clock)
        guarded.poller.run_cycle()
        ((error,),) = query(guarded, f"SELECT last_error FROM sources WHERE source_id='{sid}'")
        assert "127.0.0.1" in str(error) or "private" in str(error) or "refused" in str(error)
        assert server.hits["/r.xml"] == 0  # the guard refused before connecting to loopback
    finally:
        guarded.close()


def test_duplicate_and_missing_guids_and_wrong_charset_keep_every_entry(
    services: Services, server: Server, clock: Clock
) -> None:
    fixtures = Path(__file__).parents[1] / "fixtures" / "feeds"
    for name in ("duplicate-guids.xml", "no-guids.xml", "latin1-declared-utf8.xml"):
        server.serve(f"/{name}", Reply(200, (fixtures / name).read_bytes()))
        add(services, server, f"/{name}", clock)
    report = services.poller.run_cycle()
    assert report.outcomes == {"new": 3}
    assert query(services, "SELECT count(*) FROM articles")[0][0] >= 6


def test_sources_added_twice_are_one_source_and_removal_stops_polling(
    services: Services, server: Server, clock: Clock
) -> None:
    server.serve("/f.xml", Reply(200, rss(entries(1))))
    first = add(services, server, "/f.xml", clock)
    assert add(services, server, "/f.xml", clock) == first
    services.registry.remove(first)
    services.poller.run_cycle(all_sources=True)
    assert server.hits["/f.xml"] == 0
    assert query(services, "SELECT status FROM sources") == [("removed",)]
    types = query(services, "SELECT event_type FROM events ORDER BY position")
    assert [t for (t,) in types] == ["source.added", "source.removed"]


def test_concurrent_cycles_never_check_one_source_twice(
    services: Services, server: Server, clock: Clock
) -> None:
    """Two pollers racing (two daemons) claim disjoint sets thanks to the lease."""
    server.serve("/f.xml", lambda _h: (time.sleep(0.2), Reply(200, rss(entries(1))))[1])
    add(services, server, "/f.xml", clock)
    threads = [threading.Thread(target=services.poller.run_cycle) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert server.hits["/f.xml"] == 1


def test_follow_links_tracks_each_new_entry_page_as_the_same_article(
    services: Services, server: Server, clock: Clock
) -> None:
    pages = Path(__file__).parents[1] / "fixtures" / "pages"
    html = {"Content-Type": "text/html; charset=utf-8"}
    server.serve("/a", Reply(200, (pages / "guardian-v1.html").read_bytes(), html))
    server.serve("/b", Reply(200, (pages / "guardian-v2.html").read_bytes(), html))
    items = [(server.url(p), f"Entry {p}", "Summary.", format_datetime(T0)) for p in ("/a", "/b")]
    server.serve("/f.xml", Reply(200, rss(items)))
    services.registry.add(
        SourceEntry(kind="feed", url=server.url("/f.xml"), follow_links=True),
        origin="cli",
        now=clock(),
    )
    services.poller.run_cycle()
    kinds = dict(query(services, "SELECT url, kind FROM sources"))
    assert kinds == {
        server.url("/f.xml"): "feed",
        server.url("/a"): "page",
        server.url("/b"): "page",
    }
    services.poller.run_cycle()  # the pages are due at once
    rows = query(
        services,
        "SELECT a.url, a.version_count, group_concat(v.channel) "
        "FROM articles a JOIN article_versions v USING (article_id) "
        "GROUP BY a.article_id ORDER BY a.url",
    )
    assert [(u, n) for u, n, _ in rows] == [(server.url("/a"), 2), (server.url("/b"), 2)]
    assert all(sorted(str(c).split(",")) == ["feed", "page"] for _, _, c in rows)


def test_a_resume_during_a_failing_check_leaves_the_failure_whole(
    services: Services, server: Server, clock: Clock
) -> None:
    """The operator resumes a backing-off source while its check is failing again: the
    check's outcome is written whole (backing-off, two failures), never half of it
    over the resume (active with two failures)."""
    server.serve("/down.xml", Reply(500, b"oops"))
    sid = add(services, server, "/down.xml", clock)
    services.poller.run_cycle()
    state = f"SELECT status, consecutive_failures FROM source_state WHERE source_id = '{sid}'"
    assert query(services, state) == [("backing-off", 1)]

    def resumed_meanwhile(_handler: object) -> Reply:
        services.registry.resume(sid, clock())
        return Reply(500, b"oops")

    server.serve("/down.xml", resumed_meanwhile)
    clock.advance(86400)
    services.poller.run_cycle()
    assert query(services, state) == [("backing-off", 2)]


def test_checks_run_with_the_daemons_signals_blocked(
    services: Services, server: Server, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM, SIGINT and SIGHUP go to the daemon's main thread, never to a thread
    waiting in a receive (whose kernel timeout a signal would restart)."""
    server.serve("/feed.xml", Reply(200, b"<rss version='2.0'><channel/></rss>"))
    add(services, server, "/feed.xml", clock)
    masks: list[set[int]] = []

    def fetch(check: Any) -> None:
        masks.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))

    monkeypatch.setattr(services.poller, "_fetch", fetch)
    services.poller.run_cycle()
    assert len(masks) == 1
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} <= masks[0]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # not here
