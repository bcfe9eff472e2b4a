"""Operator mistakes at the command line: one line on stderr, the documented exit code,
no traceback, and nothing left behind."""

from __future__ import annotations

import subprocess

from tests.e2e.harness import Storyline

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
