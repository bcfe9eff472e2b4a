"""Validity intervals are a timeline ordered by ``valid_from``, whatever the order in
which versions arrive: a tracker's history imported after storyline's own version of
the article is slotted into the past, and the current view keeps the current text."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from adapters.changelog import parse_listing, parse_version
from adapters.observation import Observation
from daemon.files import FileIngestor, FileSettings
from daemon.ingest import identify
from daemon.reading import as_of
from daemon.recorder import Pending, record
from storage.projections.runner import ProjectionRunner
from storage.schema import article_versions, articles
from storage.store import EventStore
from tests.conftest import FIXTURES
from tests.integration.test_pipeline import snapshot

SEED = FIXTURES / "seeds" / "003_56ba656788b3d0c8.txt"
NS = "http://tracker.test/articles/1744520"
GUARDIAN = (
    "http://www.theguardian.com/politics/2017/dec/22/"
    "boris-johnson-meets-russian-counterpart-sergei-lavrov-moscow"
)
FILE_AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
IMPORT_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TRACKER_AT = [datetime(2017, 12, 22, h, m, tzinfo=UTC) for h, m in ((9, 31), (11, 40), (14, 5))]


@pytest.fixture
def folders(tmp_path: Path) -> FileSettings:
    settings = FileSettings(
        inbox=tmp_path / "inbox", archive=tmp_path / "archive", rejected=tmp_path / "rejected"
    )
    settings.inbox.mkdir()
    return settings


def tracker_versions() -> list[Observation]:
    """The News Sniffer fixture's three versions, as the changelog handler passes them."""
    pages = FIXTURES / "changelog" / "newssniffer"
    listing = parse_listing((pages / "article.html").read_bytes(), url=NS)
    found = [
        parse_version(
            (pages / f"version-{n}.html").read_bytes(),
            url=f"{NS}/versions/{9000 + n}",
            ref=listing.versions[n],
            listing=listing,
        )
        for n in range(3)
    ]
    assert [o.source_observed_at for o in found] == TRACKER_AT
    return [replace(o, url=listing.article_url) for o in found]


def ingest_seed(engine: Engine, folders: FileSettings, at: datetime) -> None:
    path = folders.inbox / "003.txt"
    path.write_bytes(SEED.read_bytes())
    FileIngestor(folders, EventStore(engine), clock=lambda: at).ingest([path])
    ProjectionRunner(engine).catch_up()


def import_tracker(engine: Engine, observations: list[Observation], at: datetime) -> None:
    pending = [Pending(identify(o), "src-ns", {"source_id": "src-ns"}) for o in observations]
    record(EventStore(engine), pending, at)
    ProjectionRunner(engine).catch_up()


def versions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(article_versions).order_by(article_versions.c.version))
        return [dict(r._mapping) for r in rows]


def head(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(articles)).one()._mapping)


def sql_as_of(engine: Engine, moment: datetime) -> list[int]:
    """The as-of query of docs/schema.md, with the moment in the stored form."""
    if engine.dialect.name == "sqlite":
        moment_param: object = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        moment_param = moment
    query = text(
        "SELECT version FROM article_versions WHERE article_id = :id"
        " AND valid_from <= :t AND (valid_to IS NULL OR valid_to > :t)"
    )
    with engine.connect() as conn:
        aid = conn.execute(select(articles.c.article_id)).scalar_one()
        return [v for (v,) in conn.execute(query, {"id": aid, "t": moment_param})]


def assert_timeline(found: list[dict[str, Any]]) -> None:
    """No interval ends before it starts, and the intervals tile the time from the
    earliest start on: each ends where the next begins, and only the last is open."""
    assert all(v["valid_to"] is None or v["valid_to"] >= v["valid_from"] for v in found)
    ordered = sorted(found, key=lambda v: (v["valid_from"], v["position"]))
    for earlier, later in itertools.pairwise(ordered):
        assert earlier["valid_to"] == later["valid_from"], (earlier["version"], later["version"])
    assert ordered[-1]["valid_to"] is None
    assert [v["version"] for v in found if v["valid_to"] is None] == [ordered[-1]["version"]]


def assert_as_of_agrees(engine: Engine, moments: list[datetime]) -> None:
    found = versions(engine)
    for moment in moments:
        picked = as_of(found, moment)
        assert sql_as_of(engine, moment) == ([picked["version"]] if picked else []), moment


def assert_rebuild_is_identical(engine: Engine) -> None:
    before = snapshot(engine)
    ProjectionRunner(engine).rebuild()
    assert snapshot(engine) == before


def test_a_tracker_history_imported_after_a_file_goes_into_the_past(
    engine: Engine, folders: FileSettings
) -> None:
    ingest_seed(engine, folders, FILE_AT)
    import_tracker(engine, tracker_versions(), IMPORT_AT)

    found = versions(engine)
    assert [(v["version"], v["channel"]) for v in found] == [
        (1, "file"),
        (2, "changelog"),
        (3, "changelog"),
        (4, "changelog"),
    ]
    assert_timeline(found)
    assert [(v["valid_from"], v["valid_to"]) for v in found] == [
        (FILE_AT, None),
        (TRACKER_AT[0], TRACKER_AT[1]),
        (TRACKER_AT[1], TRACKER_AT[2]),
        (TRACKER_AT[2], FILE_AT),
    ]
    assert sql_as_of(engine, datetime(2017, 12, 22, 10, 0, tzinfo=UTC)) == [2]
    assert sql_as_of(engine, datetime(2017, 12, 22, 12, 0, tzinfo=UTC)) == [3]
    assert sql_as_of(engine, FILE_AT - timedelta(microseconds=1)) == [4]
    assert sql_as_of(engine, FILE_AT) == [1]
    assert sql_as_of(engine, IMPORT_AT + timedelta(days=1)) == [1]
    assert sql_as_of(engine, TRACKER_AT[0] - timedelta(microseconds=1)) == []
    assert_as_of_agrees(
        engine,
        [t + d for t in (*TRACKER_AT, FILE_AT) for d in (timedelta(0), timedelta(seconds=-1))],
    )

    # when each edit happened (the query of docs/schema.md): after the tracker saw the
    # previous text, by the time it saw the new one; no lower bound for the tracker's
    # first version, which is older than the file's text it was compared with
    v = article_versions.c
    bounds = select(
        v.version, v.previous_check_at, func.coalesce(v.source_observed_at, v.observed_at)
    ).where(v.version > 1)
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(bounds.order_by(v.version))] == [
            (2, None, TRACKER_AT[0]),
            (3, TRACKER_AT[0], TRACKER_AT[1]),
            (4, TRACKER_AT[1], TRACKER_AT[2]),
        ]

    # the current view is still the file's version: the import only added to the count
    current = head(engine)
    first = found[0]
    assert (current["title"], current["body"]) == (first["title"], first["body"])
    assert current["source_id"] == first["source_id"] == "inbox"
    assert (current["version_count"], current["status"]) == (4, "live")
    assert current["first_seen_at"] == current["last_changed_at"] == FILE_AT
    assert_rebuild_is_identical(engine)


def test_a_later_version_after_a_tracker_history_closes_the_tracker_latest(
    engine: Engine, folders: FileSettings
) -> None:
    tracked = tracker_versions()
    import_tracker(engine, tracked, IMPORT_AT)
    later = IMPORT_AT + timedelta(hours=1)
    ingest_seed(engine, folders, later)

    found = versions(engine)
    assert [v["channel"] for v in found] == ["changelog"] * 3 + ["file"]
    assert_timeline(found)
    assert [(v["valid_from"], v["valid_to"]) for v in found] == [
        (TRACKER_AT[0], TRACKER_AT[1]),
        (TRACKER_AT[1], TRACKER_AT[2]),
        (TRACKER_AT[2], later),
        (later, None),
    ]
    current = head(engine)
    assert (current["title"], current["version_count"]) == (found[3]["title"], 4)
    assert current["last_changed_at"] == later

    # the tracker then reports a version it noticed in 2017 after its third one: it
    # goes between the third and storyline's own, and the current view stays as it was
    noticed = datetime(2017, 12, 22, 16, 20, tzinfo=UTC)
    fourth = replace(
        tracked[2],
        body=tracked[2].body.replace("to talk to each other.", "to talk to each other, he said."),
        source_version="3",
        source_observed_at=noticed,
    )
    import_tracker(engine, [fourth], later + timedelta(hours=1))
    found = versions(engine)
    assert_timeline(found)
    assert [(v["version"], v["valid_from"], v["valid_to"]) for v in found[2:]] == [
        (3, TRACKER_AT[2], noticed),
        (4, later, None),
        (5, noticed, later),
    ]
    assert sql_as_of(engine, noticed + timedelta(hours=1)) == [5]
    assert sql_as_of(engine, later + timedelta(days=1)) == [4]
    assert_as_of_agrees(engine, [noticed, noticed - timedelta(seconds=1), later])
    after = head(engine)
    assert after == {**current, "version_count": 5}
    assert_rebuild_is_identical(engine)


def test_equal_start_times_go_to_the_version_that_arrived_later(
    engine: Engine, folders: FileSettings
) -> None:
    """A second tracker reporting other texts at the same times as the first: each of
    its versions wins from that instant; the earlier ones keep zero-length intervals.
    (The same texts at the same times would be the same versions and add nothing.)"""
    tracked = tracker_versions()
    ingest_seed(engine, folders, FILE_AT)
    import_tracker(engine, tracked, IMPORT_AT)
    other = [replace(o, title=f"{o.title} (as seen {n})", source_version=f"6120{n}")
             for n, o in enumerate(tracked)]  # fmt: skip
    pending = [Pending(identify(o), "src-nd", {"source_id": "src-nd"}) for o in other]
    record(EventStore(engine), pending, IMPORT_AT + timedelta(hours=1))
    ProjectionRunner(engine).catch_up()

    found = versions(engine)
    assert len(found) == 7
    assert_timeline(found)
    by_version = {v["version"]: (v["valid_from"], v["valid_to"]) for v in found}
    assert by_version[2] == (TRACKER_AT[0], TRACKER_AT[0])  # zero-length: 5 took over
    assert by_version[5] == (TRACKER_AT[0], TRACKER_AT[1])
    assert by_version[3] == (TRACKER_AT[1], TRACKER_AT[1])
    assert by_version[6] == (TRACKER_AT[1], TRACKER_AT[2])
    assert by_version[4] == (TRACKER_AT[2], TRACKER_AT[2])
    assert by_version[7] == (TRACKER_AT[2], FILE_AT)
    assert by_version[1] == (FILE_AT, None)
    assert sql_as_of(engine, TRACKER_AT[1]) == [6]
    assert_as_of_agrees(engine, [*TRACKER_AT, FILE_AT])
    assert head(engine)["title"] == found[0]["title"]
    assert_rebuild_is_identical(engine)
