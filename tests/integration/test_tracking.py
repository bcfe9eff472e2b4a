"""Changelog sources served from the fixture pages on 127.0.0.1: whole histories are
imported once, only new versions afterwards, and pages decay until tracking stops."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from daemon.config import SourceEntry, from_mapping
from daemon.service import Services
from tests.conftest import FIXTURES
from tests.httpserver import Reply, Server, running

CHANGELOG = FIXTURES / "changelog"
EXPECTED = json.loads((CHANGELOG / "expected-versions.json").read_text())
GUARDIAN = EXPECTED["url"]
NS = "/articles/1744520"
ND = "/article-history/" + GUARDIAN.removeprefix("http://")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server() -> Iterator[Server]:
    with running() as srv:
        yield srv


@pytest.fixture
def services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    raw = {
        "http": {"allow_private_networks": True, "per_host_min_delay": 0.0, "deadline": 5.0},
        "scheduler": {"parser_processes": 1},
    }
    made = Services(from_mapping(raw, base_dir=tmp_path), clock=clock)
    made.prepare()
    yield made
    made.close()


def page(name: str) -> bytes:
    return (CHANGELOG / name).read_bytes()


def serve_newssniffer(server: Server) -> None:
    server.serve(
        NS,
        Reply(200, page("newssniffer/article.html"), {"Content-Type": "text/html; charset=utf-8"}),
    )
    for n in range(3):
        server.serve(
            f"{NS}/versions/{9000 + n}",
            Reply(
                200,
                page(f"newssniffer/version-{n}.html"),
                {"Content-Type": "text/html; charset=utf-8"},
            ),
        )


def serve_newsdiffs(server: Server, seconds: int = 0) -> None:
    """NewsDiffs's Change Log; ``seconds`` past the minute in its JSON views' times (the
    page shows them to the minute)."""
    server.serve(
        ND,
        Reply(
            200,
            page("newsdiffs/article-history.html"),
            {"Content-Type": "text/html; charset=utf-8"},
        ),
    )
    for vid in EXPECTED["nd_ids"]:
        view = page(f"newsdiffs/json-view-{vid}.json")
        view = re.sub(rb'("date": "[^"]*:)00"', b'\\g<1>%02d"' % seconds, view)
        server.serve(f"/json/view/{vid}", Reply(200, view, {"Content-Type": "application/json"}))


def add(services: Services, server: Server, path: str, clock: Clock, kind: str) -> str:
    entry = SourceEntry(kind=kind, url=server.url(path), name=path)
    return services.registry.add(entry, origin="cli", now=clock())


def query(services: Services, sql: str) -> list[tuple[object, ...]]:
    services.projector.catch_up()
    with services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def versions(services: Services) -> list[tuple[object, ...]]:
    return query(
        services,
        "SELECT version, source_version, source_observed_at, title, body, "
        "kind, channel FROM article_versions ORDER BY version",
    )


def assert_history_matches_fixture(services: Services, labels: list[str]) -> None:
    got = versions(services)
    assert [v[1] for v in got] == labels
    for row, want in zip(got, EXPECTED["versions"], strict=True):
        _, _, seen_at, title, body, _kind, channel = row
        assert str(seen_at).startswith(want["at"].removesuffix("Z").replace("T", "T"))
        assert title == want["title"]
        assert body == "\n\n".join(want["paragraphs"])
        assert channel == "changelog"
    assert [v[5] for v in got] == ["substantive"] * 3
    ((url, key, count),) = query(services, "SELECT url, article_key, version_count FROM articles")
    assert (url, key, count) == (GUARDIAN, GUARDIAN, 3)


def test_newssniffer_history_is_imported_once_then_only_new_versions(
    services: Services, server: Server, clock: Clock
) -> None:
    serve_newssniffer(server)
    add(services, server, NS, clock, "changelog")
    report = services.poller.run_cycle()
    assert report.outcomes == {"new": 1} and report.events == 3
    assert_history_matches_fixture(services, ["0", "1", "2"])

    head = query(services, "SELECT max(position) FROM events")
    again = services.poller.run_cycle(all_sources=True)
    assert again.events == 0
    assert query(services, "SELECT max(position) FROM events") == head
    assert server.hits[f"{NS}/versions/9000"] == 1  # versions are fetched once

    # the tracker notices a fourth version
    listing = page("newssniffer/article.html").decode()
    row = listing[
        listing.index('<tr>\n<td>\n  <a href="/articles/1744520/versions/9002"') : listing.index(
            "</table>"
        )
    ]
    new_row = row.replace("9002", "9003").replace(">2</a>", ">3</a>").replace("14:05", "16:20")
    listing = listing.replace("</table>", new_row + "</table>").replace(
        "<var>3</var>", "<var>4</var>"
    )
    fourth = (
        page("newssniffer/version-2.html")
        .decode()
        .replace("Version 2 of 3.", "Version 3 of 4.")
        .replace("we have to talk to each other.", "we have to talk to each other, he said.")
    )
    server.serve(NS, Reply(200, listing.encode(), {"Content-Type": "text/html; charset=utf-8"}))
    server.serve(
        f"{NS}/versions/9003",
        Reply(200, fourth.encode(), {"Content-Type": "text/html; charset=utf-8"}),
    )
    clock.now += timedelta(hours=1)
    report = services.poller.run_cycle(all_sources=True)
    assert (report.outcomes, report.events) == ({"revised": 1}, 1)
    assert query(services, "SELECT count(*) FROM events WHERE event_type = 'article.revised'") == [
        (3,)
    ]
    latest = versions(services)[-1]
    assert (latest[0], latest[1], latest[5]) == (4, "3", "substantive")
    # each edit is bounded by the tracker's times, not by storyline's checks of it
    bounds = query(
        services,
        "SELECT previous_check_at, COALESCE(source_observed_at, observed_at)"
        " FROM article_versions WHERE version > 1 ORDER BY version",
    )
    seen = [f"2017-12-22T{t}:00.000000Z" for t in ("09:31", "11:40", "14:05", "16:20")]
    assert bounds == list(itertools.pairwise(seen))


def test_newsdiffs_change_log_gives_the_same_history_and_the_same_article(
    services: Services, server: Server, clock: Clock
) -> None:
    serve_newsdiffs(server)
    add(services, server, ND, clock, "changelog")
    services.poller.run_cycle()
    assert_history_matches_fixture(services, [str(i) for i in EXPECTED["nd_ids"]])


def test_a_dropped_file_and_a_changelog_are_one_article(
    services: Services, server: Server, clock: Clock
) -> None:
    from daemon.files import FileIngestor
    from daemon.service import file_settings

    serve_newssniffer(server)
    add(services, server, NS, clock, "changelog")
    services.poller.run_cycle()
    inbox = services.settings.inbox_dir
    seed = inbox / "003.txt"
    seed.write_bytes((FIXTURES / "seeds" / "003_56ba656788b3d0c8.txt").read_bytes())
    FileIngestor(file_settings(services.settings), services.store, clock=clock).ingest([seed])
    assert query(services, "SELECT count(*), max(version_count) FROM articles") == [(1, 4)]
    channels = query(services, "SELECT channel FROM article_versions ORDER BY version")
    assert [c for (c,) in channels] == ["changelog"] * 3 + ["file"]


@pytest.mark.parametrize(
    ("name", "reply", "reason"),
    [
        ("unknown format", Reply(200, b"<html><body><p>Hello</p></body></html>"), "unrecognised"),
        ("truncated", Reply(200, page("newssniffer/article.html")[:1500]), "truncated"),
    ],
)
def test_bad_changelog_pages_fail_readably_and_import_nothing(
    services: Services, server: Server, clock: Clock, name: str, reply: Reply, reason: str
) -> None:
    server.serve(NS, reply)
    sid = add(services, server, NS, clock, "changelog")
    services.poller.run_cycle()
    ((status, error),) = query(
        services, f"SELECT status, last_error FROM sources WHERE source_id='{sid}'"
    )
    assert status == "backing-off"
    assert reason in str(error).lower() or reason in str(error), (name, error)
    assert query(services, "SELECT count(*) FROM article_versions") == [(0,)]


def test_a_version_link_that_404s_imports_nothing_half_way(
    services: Services, server: Server, clock: Clock
) -> None:
    serve_newssniffer(server)
    del server.routes[f"{NS}/versions/9002"]
    sid = add(services, server, NS, clock, "changelog")
    services.poller.run_cycle()
    ((status, error),) = query(
        services, f"SELECT status, last_error FROM sources WHERE source_id='{sid}'"
    )
    assert status == "backing-off" and "404" in str(error)
    assert query(services, "SELECT count(*) FROM article_versions") == [(0,)]
    serve_newssniffer(server)
    clock.now += timedelta(days=1)
    services.poller.run_cycle()
    assert query(services, "SELECT count(*) FROM article_versions") == [(3,)]


def test_an_unchanged_changelog_decays_then_stops_tracking_and_can_resume(
    services: Services, server: Server, clock: Clock
) -> None:
    serve_newssniffer(server)
    sid = add(services, server, NS, clock, "changelog")
    gaps: list[float] = []
    for _ in range(200):
        report = services.poller.run_cycle()
        with services.engine.connect() as conn:  # before any catch-up: the cycle projected
            projected = conn.execute(text("SELECT status FROM articles")).scalar()
        ((status, nxt),) = query(services, "SELECT status, next_check_at FROM sources")
        if status == "tracking-stopped":
            break
        due = datetime.fromisoformat(str(nxt).replace("Z", "+00:00"))
        gaps.append((due - clock.now).total_seconds())
        clock.now = due
    assert status == "tracking-stopped"
    assert projected == "tracking-stopped" and not report.unprojected
    assert gaps[0] == 1200.0  # first re-check 20 minutes after the change
    assert gaps[1] == pytest.approx(1440.0)  # x1.2 per unchanged check
    assert max(gaps) == 86400.0  # capped at a day
    assert clock.now - T0 >= timedelta(days=40)
    assert query(services, "SELECT status FROM articles") == [("tracking-stopped",)]
    hits = server.hits[NS]
    clock.now += timedelta(days=30)
    services.poller.run_cycle()
    assert server.hits[NS] == hits  # no longer checked

    services.registry.resume(sid, clock.now)
    services.poller.run_cycle()
    assert server.hits[NS] == hits + 1
    assert query(services, "SELECT status FROM articles") == [("live",)]
    assert query(services, "SELECT status FROM sources") == [("active",)]


def test_page_source_revisions_are_typed_and_reindenting_is_not_a_change(
    services: Services, server: Server, clock: Clock
) -> None:
    pages = FIXTURES / "pages"
    html = "text/html; charset=utf-8"
    sequence = [
        ("guardian-v1-straight-quotes.html", "substantive"),  # version 1
        ("guardian-v1.html", "cosmetic"),  # only the quote style: straight -> curly
        ("guardian-v1-added-paragraph.html", "substantive"),  # a paragraph added
        ("guardian-v1.html", "revert"),  # back to the text of version 2
        ("guardian-v1-reformatted.html", None),  # re-indented HTML: no new version
    ]
    sid = None
    for name, kind in sequence:
        server.serve("/story", Reply(200, (pages / name).read_bytes(), {"Content-Type": html}))
        if sid is None:
            sid = add(services, server, "/story", clock, "page")
        clock.now += timedelta(hours=1)
        services.poller.run_cycle(all_sources=True)
        kinds = [
            k for (k,) in query(services, "SELECT kind FROM article_versions ORDER BY version")
        ]
        if kind is not None:
            assert kinds[-1] == kind, (name, kinds)
    assert kinds == ["substantive", "cosmetic", "substantive", "revert"]
    outcomes = [o for (o,) in query(services, "SELECT outcome FROM fetch_log ORDER BY id")]
    assert outcomes == ["new", "revised", "revised", "revised", "unchanged"]
    ((status,),) = query(services, "SELECT status FROM sources")
    assert status == "active"


def test_a_paywalled_page_is_a_failed_check_never_a_version(
    services: Services, server: Server, clock: Clock
) -> None:
    server.serve(
        "/paywall",
        Reply(
            200,
            (FIXTURES / "pages" / "paywall.html").read_bytes(),
            {"Content-Type": "text/html; charset=utf-8"},
        ),
    )
    add(services, server, "/paywall", clock, "page")
    services.poller.run_cycle()
    ((status, error),) = query(services, "SELECT status, last_error FROM sources")
    assert status == "backing-off" and str(error).startswith("paywall:")
    assert query(services, "SELECT count(*) FROM article_versions") == [(0,)]


def serve_newssniffer_rss(server: Server) -> str:
    rss = (
        page("newssniffer/article.rss")
        .decode()
        .replace("https://www.newssniffer.co.uk", server.base)
    )
    server.serve(f"{NS}.rss", Reply(200, rss.encode(), {"Content-Type": "application/rss+xml"}))
    for a, b in ((0, 1), (1, 2)):
        server.serve(
            f"{NS}/diff/{a}/{b}",
            Reply(
                200,
                page(f"newssniffer/diff-{a}-{b}.html"),
                {"Content-Type": "text/html; charset=utf-8"},
            ),
        )
    return f"{NS}.rss"


def serve_newsdiffs_atom(server: Server) -> str:
    path = "/feed/article-history/" + GUARDIAN
    server.serve(
        path,
        Reply(
            200, page("newsdiffs/article-history.atom"), {"Content-Type": "application/atom+xml"}
        ),
    )
    for vid in EXPECTED["nd_ids"]:
        server.serve(
            f"/json/view/{vid}",
            Reply(
                200, page(f"newsdiffs/json-view-{vid}.json"), {"Content-Type": "application/json"}
            ),
        )
    return path


@pytest.mark.parametrize(
    ("serve", "labels"),
    [
        (serve_newssniffer_rss, ["0", "1", "2"]),
        (serve_newsdiffs_atom, [str(i) for i in EXPECTED["nd_ids"]]),
    ],
    ids=["newssniffer-rss", "newsdiffs-atom"],
)
def test_changelog_feeds_give_the_whole_history_including_the_first_version(
    services: Services, server: Server, clock: Clock, serve: object, labels: list[str]
) -> None:
    path = serve(server)  # type: ignore[operator]
    add(services, server, path, clock, "changelog")
    report = services.poller.run_cycle()
    assert report.events == 3, report
    assert_history_matches_fixture(services, labels)
    assert services.poller.run_cycle(all_sources=True).events == 0


# --- two trackers following one article ----------------------------------------------

FOURTH = {
    **EXPECTED["versions"][2],
    "paragraphs": [
        *EXPECTED["versions"][2]["paragraphs"][:-1],
        EXPECTED["versions"][2]["paragraphs"][-1].replace(".\u201d", ", he said.\u201d"),
    ],
}


def serve_later_versions(server: Server, later: list[tuple[datetime, dict[str, Any]]]) -> None:
    """Both trackers list ``later`` versions (tracker time, text) after their three:
    News Sniffer to the minute, NewsDiffs's JSON view to the second (Eastern time)."""
    listing = page("newssniffer/article.html").decode()
    history = page("newsdiffs/article-history.html").decode()
    total = 3 + len(later)
    ns_rows = nd_rows = ""
    for n, (at, version) in enumerate(later, start=3):
        title, paragraphs = version["title"], version["paragraphs"]
        ns_rows += (
            f'<tr>\n<td>\n  <a href="{NS}/versions/{9000 + n}">{n}</a>\n<td>\n'
            f"  {at:%B %d, %Y %H:%M}\n</td>\n<td>\n  later\n<td>\n\t{title}\n</td>\n</tr>\n"
        )
        template = page("newssniffer/version-0.html").decode()
        head, rest = template.split("<p>Version 0 of 3.</p>")
        text_html = "".join(f"\n\t\t\t<p>{p}</p>" for p in paragraphs)
        server.serve(
            f"{NS}/versions/{9000 + n}",
            Reply(
                200,
                (
                    head.replace(EXPECTED["versions"][0]["title"], title)
                    + f"<p>Version {n} of {total}.</p>{text_html}\n"
                    + rest[rest.index("\t\t</td>") :]
                ).encode(),
                {"Content-Type": "text/html; charset=utf-8"},
            ),
        )
        vid = 61300 + n
        eastern = at - timedelta(hours=5)  # EST in December
        nd_rows += (
            f'    <tr>\n      <td><a href="/json/view/{vid}">{title}</a></td>\n'
            f"      <td>{eastern:%B %d, %Y, %I:%M %p}</td>\n      <td></td>\n    </tr>\n"
        )
        view = {
            "title": title,
            "byline": version["byline"],
            "date": eastern.replace(tzinfo=None).isoformat(),
            "text": "\n\n".join(paragraphs),
        }
        server.serve(
            f"/json/view/{vid}",
            Reply(200, json.dumps(view).encode(), {"Content-Type": "application/json"}),
        )
    listing = listing.replace("</table>", ns_rows + "</table>")
    listing = listing.replace("<var>3</var>", f"<var>{total}</var>")
    html = "text/html; charset=utf-8"
    server.serve(NS, Reply(200, listing.encode(), {"Content-Type": html}))
    server.serve(ND, Reply(200, history.replace("</table>", nd_rows + "</table>").encode(),
                           {"Content-Type": html}))  # fmt: skip


def follow_with_both_trackers(
    services: Services, server: Server, clock: Clock, seconds: int = 0
) -> None:
    serve_newssniffer(server)
    serve_newsdiffs(server, seconds)
    add(services, server, NS, clock, "changelog")
    add(services, server, ND, clock, "changelog")


@pytest.mark.parametrize("seconds", [0, 42], ids=["same-times", "minute-vs-second"])
def test_two_trackers_of_one_article_give_its_three_versions_once(
    services: Services, server: Server, clock: Clock, seconds: int
) -> None:
    """News Sniffer shows its times to the minute; NewsDiffs's JSON may carry seconds:
    09:31 and 09:31:42 are the same tracker time."""
    follow_with_both_trackers(services, server, clock, seconds)
    report = services.poller.run_cycle()
    assert report.checked == 2 and report.events == 3, report
    got = versions(services)
    assert [(v[0], v[5], v[6]) for v in got] == [
        (1, "substantive", "changelog"),
        (2, "substantive", "changelog"),
        (3, "substantive", "changelog"),
    ]
    for row, want in zip(got, EXPECTED["versions"], strict=True):
        assert (str(row[2])[:16], row[3]) == (want["at"][:16], want["title"])
        assert row[4] == "\n\n".join(want["paragraphs"])
    assert query(services, "SELECT version_count FROM articles") == [(3,)]
    outcomes = sorted(str(o) for (o,) in query(services, "SELECT outcome FROM fetch_log"))
    assert outcomes == ["new", "unchanged"]  # the second tracker added nothing

    clock.now += timedelta(hours=1)
    assert services.poller.run_cycle(all_sources=True).events == 0

    # both trackers notice a fourth version: to the minute, and to the second
    fourth_at = datetime(2017, 12, 22, 16, 20, 37, tzinfo=UTC)
    serve_later_versions(server, [(fourth_at, FOURTH)])
    clock.now += timedelta(hours=1)
    report = services.poller.run_cycle(all_sources=True)
    assert (report.checked, report.events) == (2, 1), report
    got = versions(services)
    assert len(got) == 4 and got[-1][5] == "substantive"
    assert got[-1][4] == "\n\n".join(FOURTH["paragraphs"])
    assert server.hits[f"{NS}/versions/9003"] == 1 and server.hits["/json/view/61303"] == 1

    clock.now += timedelta(hours=1)
    assert services.poller.run_cycle(all_sources=True).events == 0
    assert server.hits[f"{NS}/versions/9003"] == 1 and server.hits["/json/view/61303"] == 1
    assert query(services, "SELECT count(*) FROM article_versions WHERE kind = 'revert'") == [(0,)]


def test_a_true_revert_seen_by_both_trackers_is_one_revert(
    services: Services, server: Server, clock: Clock
) -> None:
    follow_with_both_trackers(services, server, clock)
    services.poller.run_cycle()
    # the first text comes back later: a revert, on both trackers
    serve_later_versions(
        server, [(datetime(2017, 12, 22, 16, 20, tzinfo=UTC), EXPECTED["versions"][0])]
    )
    clock.now += timedelta(hours=1)
    report = services.poller.run_cycle(all_sources=True)
    assert report.events == 1, report
    rows = query(
        services,
        "SELECT version, kind, source_observed_at, body FROM article_versions ORDER BY version",
    )
    assert [r[:2] for r in rows] == [
        (1, "substantive"),
        (2, "substantive"),
        (3, "substantive"),
        (4, "revert"),
    ]
    assert rows[-1][2:] == ("2017-12-22T16:20:00.000000Z", rows[0][3])
    ((payload,),) = query(services, "SELECT payload FROM events ORDER BY position DESC LIMIT 1")
    decoded = payload if isinstance(payload, dict) else json.loads(str(payload))
    assert decoded["reverts_to_version"] == 1
