"""Operator mistakes at the command line: one line on stderr, the documented exit code,
no traceback, and nothing left behind."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.harness import STORYLINE, Storyline, base_env

# Commands that use an existing database and must not set one up.
READERS = [
    ("status",),
    ("status", "--json"),
    ("history", "x.txt"),
    ("show", "x.txt"),
    ("diff", "x.txt"),
    ("sources", "list"),
    ("sources", "show", "gpage"),
    ("sources", "remove", "gpage"),
    ("sources", "resume", "gpage"),
]


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (result.args, result.stderr)
    return lines[0]


def test_reading_a_database_init_has_not_set_up_says_so_and_creates_nothing(
    storyline: Storyline,
) -> None:
    site = storyline
    site.db.parent.mkdir(parents=True)  # SQLite would create the file in it
    for result in site.cli_all(READERS):
        line = _one_line(result)
        assert result.returncode == 1, (result.args, result.stderr)
        assert f"database {site.db} is not initialised: run `storyline init`" in line, line
    assert sorted(p.name for p in site.db.parent.iterdir()) == []

    site.db.write_bytes(b"")  # an empty file (left by an older storyline) is no better
    for result in site.cli_all(READERS[:2]):
        assert result.returncode == 1, (result.args, result.stderr)
        assert "is not initialised" in _one_line(result)

    site.init()
    result = site.cli("status")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("mysql://x:secret@localhost/db", 2, "unsupported database 'mysql'"),
        ("postgresql+psycopg2://x:secret@localhost/db", 2, "No module named 'psycopg2'"),
        ("postgresql://postgres:secret@127.0.0.1:1/test", 1, "Connection refused"),
    ],
)
def test_a_database_that_cannot_work_is_one_line_naming_storage_url(
    storyline: Storyline, url: str, code: int, says: str
) -> None:
    site = storyline
    env = {"STORYLINE_DATABASE_URL": url}
    commands = [("init",), ("run",), ("status",), ("history", "x.txt"), ("sources", "list")]
    if code == 2:  # the configuration alone says it cannot work
        commands.append(("check-config",))
    for result in site.cli_all(commands, env=env):
        line = _one_line(result)
        assert result.returncode == code, (result.args, result.stderr)
        assert line.startswith("storyline: ") and "storage.url" in line, line
        assert says in line, line
        assert "secret" not in line, line
    if code == 1:  # check-config does not open the database: only its use can tell
        assert site.cli("check-config", env=env).returncode == 0


def test_a_source_url_without_a_valid_host_is_refused_and_nothing_recorded(
    storyline: Storyline,
) -> None:
    site = storyline
    for url, says in (
        ("http://", "has no valid host"),
        ("http://exa mple.com/", "has no valid host"),
        ("ftp://example.com/", "must be http or https"),
    ):
        result = site.cli("sources", "add", url)
        assert result.returncode == 2, (url, result.stderr)
        assert f"source URL {url!r} {says}" in _one_line(result)
        assert not site.db.exists()  # refused before the database was opened
    site.init()
    assert site.cli("sources", "add", "http://exa mple.com/").returncode == 2
    assert site.count("events") == 0


def test_resuming_a_removed_source_is_refused_with_the_way_back(storyline: Storyline) -> None:
    site = storyline
    site.init()
    url = "https://news.example/story"
    sid = site.cli("sources", "add", url, "--kind", "page").stdout.strip()
    assert site.cli("sources", "remove", sid).returncode == 0
    result = site.cli("sources", "resume", sid)
    assert result.returncode == 2
    assert _one_line(result) == (
        f"storyline: source {sid} was removed; add it again with "
        f"`storyline sources add {url} --kind page`"
    )


def test_a_second_source_with_a_taken_name_is_refused(storyline: Storyline) -> None:
    site = storyline
    site.init()
    first = site.cli("sources", "add", "https://news.example/a", "--name", "gpage")
    assert first.returncode == 0, first.stderr
    result = site.cli("sources", "add", "https://news.example/b", "--name", "gpage")
    assert result.returncode == 2
    assert "the name 'gpage' is taken by source " in _one_line(result)
    assert site.count("source_config") == 1


def test_diff_of_an_article_with_one_version_says_so(storyline: Storyline) -> None:
    site = storyline
    site.init()
    story = site.stage / "story.txt"
    story.write_text("A headline\nThe one paragraph.\n", encoding="utf-8")
    assert site.cli("ingest", str(story)).returncode == 0
    result = site.cli("diff", "story.txt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "'A headline' has only one version (v1): nothing to compare\n"


def test_sources_show_prints_a_dash_for_what_is_not_known_yet(storyline: Storyline) -> None:
    site = storyline
    site.init()
    sid = site.cli("sources", "add", "https://news.example/rss").stdout.strip()
    result = site.cli("sources", "show", sid)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines()[:16])
    assert fields["source_id"] == sid and fields["name"] == "-"
    assert fields["last_check_at"] == "-" and fields["etag"] == "-"
    assert "None" not in result.stdout


def test_a_reader_that_stops_reading_ends_the_command_quietly(storyline: Storyline) -> None:
    site = storyline
    site.init()
    story = site.stage / "long.txt"
    paragraphs = "\n".join(f"Paragraph {i} of a long story, with words." for i in range(6000))
    story.write_text(f"A long headline\n{paragraphs}\n", encoding="utf-8")  # >> a pipe's 64 KiB
    assert site.cli("ingest", str(story)).returncode == 0
    process = subprocess.Popen(
        [*STORYLINE, "--config", str(site.config), "show", "long.txt"],
        env=base_env(),
        cwd=site.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"# v1 of 1")
        process.stdout.close()  # `| head -1`
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err == b""
