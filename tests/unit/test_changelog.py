"""The changelog adapter against the tracker fixtures and their expected versions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.changelog import (
    Listing,
    VersionRef,
    detect_dialect,
    detect_page,
    parse_human_time,
    parse_listing,
    parse_version,
)
from adapters.changelog_newsdiffs import eastern_to_utc, us_eastern_offset
from adapters.errors import UnusableInput
from adapters.observation import Observation

FIXTURES = Path(__file__).parents[1] / "fixtures" / "changelog"
EXPECTED = json.loads((FIXTURES / "expected-versions.json").read_text(encoding="utf-8"))
ARTICLE = EXPECTED["url"]
TRACKER = "http://tracker.test"
NS_ARTICLE = f"{TRACKER}/articles/{EXPECTED['ns_id']}"
ND_IDS = [str(i) for i in EXPECTED["nd_ids"]]
NS_LABELS = ["0", "1", "2"]

# fixture file -> (URL it is served at, dialect, kind), per the fixtures' README
PAGES = {
    "newssniffer/article.html": (NS_ARTICLE, "newssniffer", "listing"),
    "newssniffer/article.rss": (f"{NS_ARTICLE}.rss", "newssniffer", "feed"),
    "newssniffer/diff-0-1.html": (f"{NS_ARTICLE}/diff/0/1", "newssniffer", "diff"),
    "newssniffer/diff-1-2.html": (f"{NS_ARTICLE}/diff/1/2", "newssniffer", "diff"),
    **{
        f"newssniffer/version-{n}.html": (
            f"{NS_ARTICLE}/versions/{9000 + n}",
            "newssniffer",
            "version",
        )
        for n in range(3)
    },
    "newsdiffs/article-history.html": (
        f"{TRACKER}/article-history/{ARTICLE.removeprefix('http://')}",
        "newsdiffs",
        "listing",
    ),
    "newsdiffs/article-history.atom": (
        f"{TRACKER}/feed/article-history/{ARTICLE}",
        "newsdiffs",
        "feed",
    ),
    **{
        f"newsdiffs/json-view-{i}.json": (f"{TRACKER}/json/view/{i}", "newsdiffs", "json-view")
        for i in ND_IDS
    },
}
LISTINGS = [
    name for name, (_, _, kind) in PAGES.items() if kind != "version" and kind != "json-view"
]


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def url(name: str) -> str:
    return PAGES[name][0]


def listing(name: str, data: bytes | None = None) -> Listing:
    return parse_listing(body(name) if data is None else data, url=url(name))


def expected_time(index: int) -> datetime:
    return datetime.fromisoformat(EXPECTED["versions"][index]["at"])


def assert_ref(ref: VersionRef, label: str, index: int) -> None:
    version = EXPECTED["versions"][index]
    assert (ref.label, ref.observed_at, ref.title) == (
        label,
        expected_time(index),
        version["title"],
    )
    assert ref.observed_at.utcoffset() is not None


def assert_observation(
    observation: Observation, name: str, label: str, index: int, *, byline: bool
) -> None:
    version = EXPECTED["versions"][index]
    assert observation.body == "\n\n".join(version["paragraphs"])
    assert observation.title == version["title"]
    assert observation.byline == (version["byline"] if byline else None)
    assert (observation.source_version, observation.source_observed_at) == (
        label,
        expected_time(index),
    )
    assert (observation.url, observation.source_name) == (ARTICLE, EXPECTED["source"])
    assert observation.channel == "changelog"
    assert observation.extra == {"tracker": PAGES[name][1], "tracker_url": url(name)}


# --- every fixture: dialect, article identity, versions ------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_every_fixture_is_recognised(name: str) -> None:
    _, dialect, kind = PAGES[name]
    assert detect_dialect(body(name), url=url(name)) == dialect
    assert detect_page(body(name), url=url(name)).kind == kind


@pytest.mark.parametrize("name", LISTINGS)
def test_every_listing_names_the_original_article_and_its_source(name: str) -> None:
    result = listing(name)
    assert (result.article_url, result.source_name) == (ARTICLE, EXPECTED["source"])
    assert result.dialect == PAGES[name][1]


def test_news_sniffer_article_page_lists_three_versions_with_their_pages() -> None:
    result = listing("newssniffer/article.html")
    for index, ref in enumerate(result.versions):
        assert_ref(ref, NS_LABELS[index], index)
    assert [v.url for v in result.versions] == [
        f"{NS_ARTICLE}/versions/{9000 + n}" for n in range(3)
    ]
    assert result.observations == []


def test_newsdiffs_change_log_lists_three_versions_in_utc_with_json_views() -> None:
    result = listing("newsdiffs/article-history.html")
    for index, ref in enumerate(result.versions):
        assert_ref(ref, ND_IDS[index], index)  # 4:31 AM EST is 09:31 UTC
    assert [v.url for v in result.versions] == [f"{TRACKER}/json/view/{i}" for i in ND_IDS]
    assert result.observations == []


@pytest.mark.parametrize(
    ("name", "labels", "urls"),
    [
        (
            "newssniffer/article.rss",
            NS_LABELS,
            [f"https://www.newssniffer.co.uk/articles/1744520/diff/{n - 1}/{n}" for n in (1, 2)],
        ),
        (
            "newsdiffs/article-history.atom",
            ND_IDS,
            [f"{TRACKER}/json/view/{i}" for i in ND_IDS[1:]],
        ),
    ],
)
def test_feeds_list_the_changed_versions(name: str, labels: list[str], urls: list[str]) -> None:
    # A feed has one item per change: the first version is only the old side of the first
    # diff, with no time of its own, so it is not listed (see the adapter's known gaps).
    result = listing(name)
    assert len(result.versions) == 2
    for index, ref in enumerate(result.versions, start=1):
        assert_ref(ref, labels[index], index)
    assert [v.url for v in result.versions] == urls
    assert result.observations == []


# --- full texts: version pages, JSON views, diff pages -------------------------------


@pytest.mark.parametrize("index", range(3))
def test_news_sniffer_version_page_gives_the_exact_text(index: int) -> None:
    name = f"newssniffer/version-{index}.html"
    ref = listing("newssniffer/article.html").versions[index]
    assert ref.url == url(name)
    observation = parse_version(
        body(name), url=url(name), ref=ref, listing=listing("newssniffer/article.html")
    )
    assert_observation(observation, name, NS_LABELS[index], index, byline=False)


@pytest.mark.parametrize("index", range(3))
def test_newsdiffs_json_view_gives_the_exact_text_and_byline(index: int) -> None:
    name = f"newsdiffs/json-view-{ND_IDS[index]}.json"
    history = listing("newsdiffs/article-history.html")
    ref = history.versions[index]
    assert ref.url == url(name)
    observation = parse_version(body(name), url=url(name), ref=ref, listing=history)
    assert_observation(observation, name, ND_IDS[index], index, byline=True)


@pytest.mark.parametrize("old", [0, 1])
def test_diff_page_recovers_both_versions_in_full(old: int) -> None:
    name = f"newssniffer/diff-{old}-{old + 1}.html"
    result = listing(name)
    for index, ref in enumerate(result.versions, start=old):
        assert_ref(ref, NS_LABELS[index], index)
    assert [o.source_version for o in result.observations] == NS_LABELS[old : old + 2]
    for index, observation in enumerate(result.observations, start=old):
        assert_observation(observation, name, NS_LABELS[index], index, byline=False)


@pytest.mark.parametrize("old", [0, 1])
def test_diff_page_versions_equal_the_version_pages(old: int) -> None:
    article = listing("newssniffer/article.html")
    name = f"newssniffer/diff-{old}-{old + 1}.html"
    for index in (old, old + 1):
        ref = article.versions[index]
        page = f"newssniffer/version-{index}.html"
        from_page = parse_version(body(page), url=url(page), ref=ref, listing=article)
        from_diff = parse_version(body(name), url=url(name), ref=ref, listing=article)
        keep = ("title", "body", "source_version", "source_observed_at", "url", "source_name")
        assert [getattr(from_diff, k) for k in keep] == [getattr(from_page, k) for k in keep]


def test_feed_items_lead_to_diff_pages_that_hold_their_versions() -> None:
    feed = listing("newssniffer/article.rss")
    for ref in feed.versions:
        diff = f"newssniffer/diff-{int(ref.label) - 1}-{ref.label}.html"
        observation = parse_version(body(diff), url=url(diff), ref=ref, listing=feed)
        assert observation.body == "\n\n".join(EXPECTED["versions"][int(ref.label)]["paragraphs"])


def test_feed_entry_with_content_becomes_an_observation() -> None:
    paragraphs = EXPECTED["versions"][2]["paragraphs"]
    html = "".join(f"<p>{p}</p>" for p in paragraphs).replace("&", "&amp;")
    description = f"<description><![CDATA[{html}]]></description></item>"
    rss = body("newssniffer/article.rss").decode().replace("</item>", description, 1)
    result = listing("newssniffer/article.rss", rss.encode())
    [observation] = result.observations
    assert (observation.source_version, observation.body) == ("2", "\n\n".join(paragraphs))


# --- order and tolerance -------------------------------------------------------------


def rows(html: str) -> tuple[str, list[str], str]:
    """The page split around its version rows (the <tr>s holding a link)."""
    parts = re.split(r"(?=<tr>)|(?<=</tr>)", html)
    keep = [i for i, part in enumerate(parts) if part.startswith("<tr>") and "href" in part]
    first, last = keep[0], keep[-1]
    return "".join(parts[:first]), [parts[i] for i in keep], "".join(parts[last + 1 :])


@pytest.mark.parametrize("name", ["newssniffer/article.html", "newsdiffs/article-history.html"])
def test_rows_out_of_order_are_sorted_oldest_first(name: str) -> None:
    head, version_rows, tail = rows(body(name).decode())
    shuffled = [version_rows[2], version_rows[0], version_rows[1]]
    result = listing(name, (head + "".join(shuffled) + tail).encode())
    assert [v.observed_at for v in result.versions] == [expected_time(i) for i in range(3)]
    assert [v.label for v in result.versions] == [v.label for v in listing(name).versions]


def test_feed_items_out_of_order_are_sorted() -> None:
    result = listing("newssniffer/article.rss")  # the feed itself is newest first
    assert [v.label for v in result.versions] == ["1", "2"]


def noisy(html: str) -> str:
    """The same page with extra whitespace, markup, entities and sloppier tags."""
    return (
        html.replace("’", "&rsquo;")
        .replace("‘", "&#8216;")
        .replace("“", "&ldquo;")
        .replace("Lavrov", "<span class='name'>Lavrov</span>")
        .replace("Johnson", "<b>\n  Johnson</b>")
        .replace("<td>", "<td  class='cell' >\n\t")
        .replace("</p>", "\n  <!-- ad --> </p>")
        .replace("<table", "<!-- rows follow -->\n<table")
    )


@pytest.mark.parametrize("name", [n for n in LISTINGS if n.endswith(".html")])
def test_listing_tolerates_noise(name: str) -> None:
    assert listing(name, noisy(body(name).decode()).encode()) == listing(name)


def test_declared_charset_is_honoured() -> None:
    name = "newssniffer/article.html"
    latin = body(name).decode().replace("‘", "'").replace("’", "'").replace("Moscow", "Moskv\xe4")
    result = parse_listing(
        latin.encode("latin-1"), url=url(name), content_type="text/html; charset=ISO-8859-1"
    )
    assert (
        result.versions[0].title
        == "'Things aren't easy between us': Boris Johnson meets Russian counterpart in Moskv\xe4"
    )


@pytest.mark.parametrize("index", range(3))
def test_version_page_tolerates_noise(index: int) -> None:
    article = listing("newssniffer/article.html")
    name = f"newssniffer/version-{index}.html"
    ref = article.versions[index]
    clean = parse_version(body(name), url=url(name), ref=ref, listing=article)
    messy = parse_version(
        noisy(body(name).decode()).encode(), url=url(name), ref=ref, listing=article
    )
    assert messy == clean


def test_json_view_tolerates_extra_whitespace() -> None:
    history = listing("newsdiffs/article-history.html")
    name = f"newsdiffs/json-view-{ND_IDS[0]}.json"
    view = json.loads(body(name))
    view["text"] = "\n\n" + view["text"].replace("\n\n", "\n \n\n   ") + "\n"
    view["extra"] = {"ignored": True}
    ref = history.versions[0]
    messy = parse_version(
        json.dumps(view, indent=2).encode(), url=url(name), ref=ref, listing=history
    )
    assert messy == parse_version(body(name), url=url(name), ref=ref, listing=history)


# --- refusals ------------------------------------------------------------------------


def reason(excinfo: pytest.ExceptionInfo[UnusableInput]) -> str:
    return excinfo.value.reason


@pytest.mark.parametrize("name", [n for n in PAGES if not n.endswith(".json")])
def test_page_cut_in_half_is_refused_as_truncated(name: str) -> None:
    half = body(name)[: len(body(name)) // 2]
    with pytest.raises(UnusableInput) as excinfo:
        if PAGES[name][2] == "version":
            article = listing("newssniffer/article.html")
            ref = article.versions[int(name[-6])]
            parse_version(half, url=url(name), ref=ref, listing=article)
        else:
            parse_listing(half, url=url(name))
    assert reason(excinfo) == "truncated"


def parse_any(name: str, data: bytes) -> Listing | Observation:
    kind = PAGES[name][2]
    if kind not in ("version", "json-view"):
        return parse_listing(data, url=url(name))
    source = "newssniffer/article.html" if kind == "version" else "newsdiffs/article-history.html"
    history = listing(source)
    ref = next(v for v in history.versions if v.url == url(name))
    return parse_version(data, url=url(name), ref=ref, listing=history)


@pytest.mark.parametrize("name", PAGES)
def test_no_prefix_of_a_page_passes_for_a_shorter_history(name: str) -> None:
    whole, data = parse_any(name, body(name)), body(name)
    for cut in range(1, len(data), 23):
        try:
            assert parse_any(name, data[:cut]) == whole  # only a cut after the content
        except UnusableInput as refused:
            assert refused.reason in ("truncated", "unrecognised-changelog")


def test_json_view_cut_in_half_is_refused_as_truncated() -> None:
    history = listing("newsdiffs/article-history.html")
    name = f"newsdiffs/json-view-{ND_IDS[0]}.json"
    half = body(name)[: len(body(name)) // 2]
    with pytest.raises(UnusableInput) as excinfo:
        parse_version(half, url=url(name), ref=history.versions[0], listing=history)
    assert reason(excinfo) == "truncated"


def test_news_sniffer_page_listing_fewer_rows_than_it_counts_is_truncated() -> None:
    head, version_rows, tail = rows(body("newssniffer/article.html").decode())
    with pytest.raises(UnusableInput) as excinfo:
        listing("newssniffer/article.html", (head + "".join(version_rows[:2]) + tail).encode())
    assert reason(excinfo) == "truncated"


@pytest.mark.parametrize("name", ["newssniffer/article.html", "newsdiffs/article-history.html"])
def test_listing_without_versions_is_refused(name: str) -> None:
    head, _, tail = rows(body(name).decode())
    page = re.sub(r"has changed <var>\d+</var> times", "", head + tail)
    with pytest.raises(UnusableInput) as excinfo:
        listing(name, page.encode())
    assert reason(excinfo) == "no-versions"


def test_feed_without_entries_is_refused() -> None:
    atom = re.sub(
        r"<entry>.*?</entry>", "", body("newsdiffs/article-history.atom").decode(), flags=re.S
    )
    with pytest.raises(UnusableInput) as excinfo:
        listing("newsdiffs/article-history.atom", atom.encode())
    assert reason(excinfo) == "no-versions"


@pytest.mark.parametrize("name", ["newssniffer/article.html", "newsdiffs/article-history.html"])
def test_a_version_label_listed_twice_is_refused(name: str) -> None:
    head, version_rows, tail = rows(body(name).decode())
    page = head + "".join([*version_rows, version_rows[1]]) + tail
    with pytest.raises(UnusableInput) as excinfo:
        listing(name, page.encode())
    assert reason(excinfo) == "duplicate-version"


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE html><html><body><h1>Hi</h1><table><tr><td>1</td></tr></table></body></html>",
        b'{"items": []}',
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>',
    ],
)
def test_unknown_page_is_unrecognised(data: bytes) -> None:
    for parse in (detect_dialect, parse_listing):
        with pytest.raises(UnusableInput) as excinfo:
            parse(data, url=f"{TRACKER}/elsewhere")
        assert reason(excinfo) == "unrecognised-changelog"


def test_version_page_is_not_a_listing() -> None:
    with pytest.raises(UnusableInput) as excinfo:
        listing("newssniffer/version-0.html")
    assert reason(excinfo) == "not-a-listing"


@pytest.mark.parametrize(
    "name", ["newssniffer/version-1.html", f"newsdiffs/json-view-{ND_IDS[1]}.json"]
)
def test_page_of_another_version_is_refused(name: str) -> None:
    source = (
        "newssniffer/article.html" if "newssniffer" in name else "newsdiffs/article-history.html"
    )
    history = listing(source)
    with pytest.raises(UnusableInput) as excinfo:
        parse_version(body(name), url=url(name), ref=history.versions[0], listing=history)
    assert reason(excinfo) == "version-mismatch"


def test_version_page_of_another_article_is_refused() -> None:
    article = listing("newssniffer/article.html")
    other = body("newssniffer/version-0.html").replace(b"lavrov-moscow", b"other-story")
    with pytest.raises(UnusableInput) as excinfo:
        parse_version(
            other, url=url("newssniffer/version-0.html"), ref=article.versions[0], listing=article
        )
    assert reason(excinfo) == "article-mismatch"


# --- times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("December 22, 2017 09:31", datetime(2017, 12, 22, 9, 31)),
        ("December 22, 2017, 4:31 PM", datetime(2017, 12, 22, 16, 31)),
        ("Dec. 22, 2017, 4 a.m.", datetime(2017, 12, 22, 4, 0)),
        ("Dec. 22, 2017, noon", datetime(2017, 12, 22, 12, 0)),
        ("December 22, 2017 13:31 about 2 hours later", datetime(2017, 12, 22, 13, 31)),
    ],
)
def test_tracker_times_are_read_in_their_usual_shapes(text: str, expected: datetime) -> None:
    assert parse_human_time(text, TRACKER) == expected


@pytest.mark.parametrize(
    "local",
    [datetime(2017, 12, 22, 4, 31), datetime(2017, 7, 4, 12, 0), datetime(2019, 3, 10, 3, 30)],
)
def test_eastern_time_follows_daylight_saving_with_or_without_tzdata(local: datetime) -> None:
    utc = eastern_to_utc(local)
    assert utc == local.replace(tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
    assert utc == (local - us_eastern_offset(local)).replace(tzinfo=UTC)
