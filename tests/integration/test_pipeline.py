"""The file pipeline on real folders and a real database: inbox -> events ->
projections -> archive/rejected."""

from __future__ import annotations

import itertools
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from daemon.files import FileIngestor, FileSettings
from storage.projections.runner import ProjectionRunner
from storage.schema import article_versions, articles, rejections
from storage.store import EventStore
from tests.conftest import FIXTURES

SEEDS = sorted((FIXTURES / "seeds").glob("*.txt"))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def folders(tmp_path: Path) -> FileSettings:
    settings = FileSettings(
        inbox=tmp_path / "inbox",
        archive=tmp_path / "archive",
        rejected=tmp_path / "rejected",
        max_file_bytes=20_000,
    )
    settings.inbox.mkdir()
    return settings


def drop(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def run(engine: Engine, settings: FileSettings, paths: list[Path]) -> object:
    ingestor = FileIngestor(settings, EventStore(engine), clock=Clock())
    report = ingestor.ingest(paths)
    ProjectionRunner(engine).catch_up()
    return report


def rows(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


def test_seeds_become_articles_and_files_are_archived(
    engine: Engine, folders: FileSettings
) -> None:
    paths = [drop(folders.inbox, p.name, p.read_bytes()) for p in SEEDS]
    run(engine, folders, paths)
    found = rows(engine, "SELECT article_key, version_count, status FROM articles")
    assert len(found) == 5
    assert all(count == 1 and status == "live" for _, count, status in found)
    keys = {k for k, _, _ in found}
    assert (
        "http://www.theguardian.com/politics/2017/dec/22/boris-johnson-meets-russian-counterpart-sergei-lavrov-moscow"
        in keys
    )
    assert "file:000_15f38aee0feb4d97.txt" in keys
    assert list(folders.inbox.iterdir()) == []
    archived = list(folders.archive.rglob("*.txt"))
    assert sorted(p.name for p in archived) == [p.name for p in SEEDS]
    assert archived[0].parent.relative_to(folders.archive).as_posix().count("/") == 2  # Y/M/D


def test_revisions_get_versions_with_validity_intervals(
    engine: Engine, folders: FileSettings
) -> None:
    text_v1 = 'Title\nStandfirst sentence\nFirst paragraph.\nSecond "quoted" paragraph.\n'
    text_v2 = text_v1 + "A new paragraph.\n"
    text_v3 = text_v2.replace('"quoted"', "\u201cquoted\u201d")
    for body in (text_v1, text_v2, text_v3, text_v1, text_v1):
        run(engine, folders, [drop(folders.inbox, "story.txt", body)])
    versions = rows(
        engine,
        "SELECT version, kind, valid_from, valid_to FROM article_versions ORDER BY version",
    )
    assert [(v, k) for v, k, _, _ in versions] == [
        (1, "substantive"),
        (2, "substantive"),
        (3, "cosmetic"),
        (4, "revert"),
    ]
    for (_, _, _, valid_to), (_, _, next_from, _) in itertools.pairwise(versions):
        assert valid_to == next_from
    assert versions[-1][3] is None
    assert rows(engine, "SELECT version_count FROM articles") == [(4,)]


BAD = {
    "empty.txt": (b"", "empty"),
    "blank.txt": (b"  \n\n ", "empty"),
    "binary.txt": (b"\x89PNG\x00\x00\x01", "binary"),
    "huge.txt": (b"x" * 30_000, "too-large"),
}


def test_bad_inputs_are_kept_with_a_reason_and_good_ones_still_ingested(
    engine: Engine, folders: FileSettings
) -> None:
    paths = [drop(folders.inbox, name, data) for name, (data, _) in BAD.items()]
    (folders.inbox / "folder").mkdir()
    outside = drop(folders.inbox.parent, "outside.txt", "Outside\nbody\n")
    (folders.inbox / "link.txt").symlink_to(outside)
    paths += [folders.inbox / "folder", folders.inbox / "link.txt", folders.inbox / "gone.txt"]
    paths.append(drop(folders.inbox, "good.txt", "A good title\nA body line.\n"))
    run(engine, folders, paths)

    expected = {name: reason for name, (_, reason) in BAD.items()}
    expected |= {"folder": "directory", "link.txt": "symlink", "gone.txt": "vanished"}
    found = dict(rows(engine, "SELECT input, reason FROM rejections"))
    assert {Path(str(k)).name: v for k, v in found.items()} == expected
    for name, reason in expected.items():
        if reason == "vanished":
            assert not (folders.rejected / name).exists()
            continue
        assert os.path.lexists(folders.rejected / name), name
        why = json.loads((folders.rejected / f"{name}.why.json").read_text())
        assert why["reason"] == reason and name in why["input"]
    assert outside.read_text() == "Outside\nbody\n"  # the link target is untouched
    assert rows(engine, "SELECT title FROM articles") == [("A good title",)]
    assert sorted(os.listdir(folders.inbox)) == []


def test_reoffering_a_committed_file_is_a_no_op(engine: Engine, folders: FileSettings) -> None:
    """A crash after commit and before the move leaves the file in the inbox."""
    path = drop(folders.inbox, "a.txt", "Title\nBody.\n")
    keep = FileSettings(
        inbox=folders.inbox,
        archive=folders.archive,
        rejected=folders.rejected,
        after_ingest="keep",
    )
    run(engine, keep, [path])
    run(engine, keep, [path])
    run(engine, folders, [path])
    assert rows(engine, "SELECT count(*) FROM events") == [(1,)]
    assert not path.exists()


def _random_history(engine: Engine, folders: FileSettings, seed: int) -> None:
    rng = random.Random(seed)
    paragraphs = [f"Paragraph {i} says something." for i in range(6)]
    for _ in range(40):
        name = f"story-{rng.randrange(5)}.txt"
        body = rng.sample(paragraphs, rng.randrange(1, 4))
        if rng.random() < 0.3:
            body = [p.replace("says", "says,") for p in body]
        data = f"Story {name}\n" + "\n".join(body) + "\n"
        batch = [drop(folders.inbox, name, data)]
        if rng.random() < 0.2:
            batch.append(drop(folders.inbox, f"bad-{rng.random()}.txt", b""))
        run(engine, folders, batch)


def snapshot(engine: Engine) -> list[object]:
    """The projected tables, in a stable order (shared with test_timeline)."""
    with engine.connect() as conn:
        return [
            conn.execute(select(articles).order_by(articles.c.article_id)).all(),
            conn.execute(
                select(article_versions).order_by(
                    article_versions.c.article_id, article_versions.c.version
                )
            ).all(),
            conn.execute(select(rejections).order_by(rejections.c.position)).all(),
        ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rebuild_gives_the_same_tables_as_incremental_processing(
    engine: Engine, folders: FileSettings, seed: int
) -> None:
    _random_history(engine, folders, seed)
    before = snapshot(engine)
    assert before[1], "the history produced versions"
    replayed = ProjectionRunner(engine).rebuild()
    assert replayed > 0
    assert snapshot(engine) == before
    assert set(ProjectionRunner(engine).lag().values()) == {0}


def test_a_failing_projection_batch_changes_neither_rows_nor_checkpoint(
    engine: Engine, folders: FileSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore(engine)
    FileIngestor(folders, store, clock=Clock()).ingest([drop(folders.inbox, "a.txt", "A\nbody\n")])
    runner = ProjectionRunner(engine)
    runner.catch_up()

    def explode(*_: object) -> None:
        raise RuntimeError("boom")

    FileIngestor(folders, store, clock=Clock()).ingest([drop(folders.inbox, "e.txt", b"")])
    monkeypatch.setattr(runner.projections["rejections"], "apply", explode)
    with pytest.raises(RuntimeError):
        runner.catch_up()
    assert rows(engine, "SELECT count(*) FROM rejections") == [(0,)]
    assert runner.lag()["rejections"] > 0
    monkeypatch.undo()
    assert runner.catch_up() == 1
    assert rows(engine, "SELECT count(*) FROM rejections") == [(1,)]


def test_files_that_arrive_while_a_batch_is_recorded_join_the_same_run(
    engine: Engine, folders: FileSettings
) -> None:
    """``more`` feeds the pipeline: later arrivals are ingested in the same call, in
    batches, each file once, even when offered twice."""
    first = [drop(folders.inbox, f"a{i}.txt", f"Title a{i}\nBody {i}.\n") for i in range(5)]
    later = [drop(folders.inbox, f"b{i}.txt", f"Title b{i}\nBody {i}.\n") for i in range(7)]
    offers = [later[:4] + first[:1], later[4:] + later[:1], []]
    asked: list[int] = []

    def more(limit: int) -> list[Path]:
        asked.append(limit)
        return offers.pop(0) if offers else []

    batches: list[list[str]] = []
    ingestor = FileIngestor(folders, EventStore(engine), clock=Clock())
    report = ingestor.ingest(
        first, batch_size=4, more=more, each=lambda b, _: batches.append([p.name for p in b])
    )
    assert report.new == 12
    assert sorted(n for b in batches for n in b) == sorted(p.name for p in first + later)
    assert all(len(b) <= 4 for b in batches) and all(limit <= 4 for limit in asked)
    assert os.listdir(folders.inbox) == []


def test_a_stop_request_lets_only_the_batch_in_flight_finish_even_with_more_coming(
    engine: Engine, folders: FileSettings
) -> None:
    paths = [drop(folders.inbox, f"c{i}.txt", f"Title c{i}\nBody {i}.\n") for i in range(6)]
    stopping = [False]

    def each(batch: list[Path], _report: object) -> None:
        stopping[0] = True  # asked to stop after the first batch

    ingestor = FileIngestor(folders, EventStore(engine), clock=Clock())
    report = ingestor.ingest(
        paths[:2], batch_size=2, stop=lambda: stopping[0], each=each, more=lambda n: paths[2:]
    )
    assert report.new == 2
    assert sorted(os.listdir(folders.inbox)) == sorted(p.name for p in paths[2:])


def test_a_new_file_under_a_name_already_ingested_in_the_same_run_is_ingested_too(
    engine: Engine, folders: FileSettings
) -> None:
    """A producer that reuses a name (latest.txt) while a run is still going."""
    first = drop(folders.inbox, "latest.txt", "Title one\nFirst text.\n")
    others = [drop(folders.inbox, f"o{i}.txt", f"Title o{i}\nBody {i}.\n") for i in range(3)]
    offered = []

    def more(limit: int) -> list[Path]:
        if not offered and not first.exists():  # the first latest.txt is archived
            offered.append(drop(folders.inbox, "latest.txt", "Title two\nSecond text.\n"))
            return [first]
        return []

    ingestor = FileIngestor(folders, EventStore(engine), clock=Clock())
    report = ingestor.ingest([first, *others], batch_size=1, more=more)
    assert offered and report.new + report.revised == 5
    assert os.listdir(folders.inbox) == []
