from __future__ import annotations

from datetime import UTC, datetime

from daemon.reading import as_of, render_diff, word_diff


def test_word_diff_marks_only_changed_words() -> None:
    pieces = list(
        word_diff("Johnson meets Lavrov in Moscow", "Johnson spars with Lavrov in Moscow")
    )
    assert render_diff(pieces, colour=False) == "Johnson [-meets-]{+spars with+} Lavrov in Moscow"
    coloured = render_diff(pieces, colour=True)
    assert "\x1b[32mspars with\x1b[0m" in coloured and "\x1b[31;9mmeets\x1b[0m" in coloured


def test_as_of_picks_the_version_valid_at_that_moment() -> None:
    t = [datetime(2017, 12, 22, h, tzinfo=UTC) for h in (9, 11, 14)]
    versions = [
        {"version": 1, "valid_from": t[0], "valid_to": t[1]},
        {"version": 2, "valid_from": t[1], "valid_to": t[2]},
        {"version": 3, "valid_from": t[2], "valid_to": None},
    ]
    assert as_of(versions, datetime(2017, 12, 22, 8, tzinfo=UTC)) is None
    assert as_of(versions, t[0])["version"] == 1  # type: ignore[index]
    assert as_of(versions, datetime(2017, 12, 22, 12, tzinfo=UTC))["version"] == 2  # type: ignore[index]
    assert as_of(versions, datetime(2030, 1, 1, tzinfo=UTC))["version"] == 3  # type: ignore[index]
