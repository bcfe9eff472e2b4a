"""The domain rules: which event, if any, an observation becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.observation import Observation
from daemon.ingest import (
    ArticleState,
    decide,
    diff_stats,
    evolve,
    idempotency_key,
    identify,
)
from storage.events import ArticleDiscovered, ArticleRevised

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BODY = 'Boris Johnson will travel to Moscow.\n\nHe said "talks" would follow.'


def obs(
    body: str = BODY, title: str = "Johnson to visit Moscow", channel: str = "file"
) -> Observation:
    return Observation(title=title, body=body, channel=channel, url="https://example.com/a")


def feed(
    state: ArticleState, observation: Observation, minutes: int
) -> tuple[ArticleState, object]:
    item = identify(observation)
    event = decide(state, item, source_id="inbox", observed_at=T0 + timedelta(minutes=minutes))
    if event is not None:
        state = evolve(state, event, state.stream_version + 1)
    return state, event


def start() -> ArticleState:
    return ArticleState(article_id=identify(obs()).article_id)


def test_first_observation_discovers_the_article() -> None:
    _, event = feed(start(), obs(), 0)
    assert isinstance(event, ArticleDiscovered)
    assert event.url == "https://example.com/a"
    assert event.article_key == "https://example.com/a"


def test_identical_text_adds_nothing() -> None:
    state, _ = feed(start(), obs(), 0)
    _, event = feed(state, obs(), 5)
    assert event is None


def test_whitespace_and_quote_style_changes_are_cosmetic() -> None:
    state, _ = feed(start(), obs(), 0)
    curly = BODY.replace('"talks"', "\u201ctalks\u201d").replace("Moscow.", "Moscow .  ")
    _, event = feed(state, obs(curly), 5)
    assert isinstance(event, ArticleRevised)
    assert event.kind == "cosmetic"
    assert event.changed_fields == ("body",)
    assert event.previous_check_at == T0


def test_new_wording_is_substantive_with_diff_stats() -> None:
    state, _ = feed(start(), obs(), 0)
    _, event = feed(state, obs(BODY + "\n\nA third paragraph."), 5)
    assert isinstance(event, ArticleRevised)
    assert event.kind == "substantive"
    assert (event.chars_added, event.chars_removed) == (len("Athirdparagraph."), 0)
    assert event.previous_version == 1


def test_return_to_an_earlier_text_is_a_revert() -> None:
    state, _ = feed(start(), obs(), 0)
    state, _ = feed(state, obs(BODY + "\n\nAdded."), 5)
    _, event = feed(state, obs(), 10)
    assert isinstance(event, ArticleRevised)
    assert (event.kind, event.reverts_to_version) == ("revert", 1)


def test_a_feed_summary_never_revises_the_full_text_of_another_channel() -> None:
    state, _ = feed(start(), obs(), 0)
    summary = obs("Johnson will travel to Moscow.", channel="feed")
    state, first = feed(state, summary, 5)
    assert isinstance(first, ArticleRevised)  # the article as the feed shows it
    _, again = feed(state, summary, 10)
    assert again is None
    _, file_again = feed(state, obs(), 15)
    assert file_again is None  # compared with the latest *file* version, unchanged


def tracked(body: str, at: datetime, label: str) -> Observation:
    """A version imported from a tracker's changelog, noticed by the tracker ``at``."""
    return Observation(
        title="Johnson to visit Moscow",
        body=body,
        channel="changelog",
        url="https://example.com/a",
        source_version=label,
        source_observed_at=at,
    )


def record_at(
    state: ArticleState, observation: Observation, at: datetime, last_check: datetime | None
) -> tuple[ArticleState, ArticleRevised | None]:
    item = identify(observation)
    event = decide(state, item, source_id="src-ns", observed_at=at, previous_check_at=last_check)
    if event is not None:
        state = evolve(state, event, state.stream_version + 1)
    return state, event if isinstance(event, ArticleRevised) else None


def test_a_tracker_version_is_bounded_by_the_tracker_times_not_by_the_import() -> None:
    """The edit from tracker version 0 to 1 happened after the tracker saw version 0
    (2017), not after storyline's last check of the tracker's page."""
    seen = [datetime(2017, 12, 22, h, tzinfo=UTC) for h in (9, 11, 14)]
    imported = T0 + timedelta(days=300)
    last_check = imported - timedelta(hours=1)
    state, _ = record_at(start(), tracked(BODY, seen[0], "0"), imported, last_check)
    state, second = record_at(state, tracked(BODY + "\n\nOne.", seen[1], "1"), imported, None)
    _, third = record_at(state, tracked(BODY + "\n\nTwo.", seen[2], "2"), imported, last_check)
    assert second is not None and second.previous_check_at == seen[0]
    assert third is not None and third.previous_check_at == seen[1]


def test_a_tracker_version_older_than_the_text_it_is_compared_with_has_no_bound() -> None:
    old = datetime(2017, 12, 22, 9, tzinfo=UTC)
    state, _ = feed(start(), obs(), 0)  # a file recorded at T0 (2026)
    _, event = record_at(state, tracked(BODY + "\n\nOld.", old, "0"), T0 + timedelta(hours=1), T0)
    assert event is not None and event.previous_check_at is None

    state, _ = feed(start(), obs(), 0)
    later = T0 + timedelta(hours=2)  # the tracker saw the change after storyline's file
    _, event = record_at(state, tracked(BODY + "\n\nNew.", later, "5"), later, None)
    assert event is not None and event.previous_check_at == T0


def imported_history(times: list[datetime]) -> ArticleState:
    """A first tracker's three versions (texts BODY, +One, +Two) noticed at ``times``."""
    state = start()
    for n, (body, at) in enumerate(zip(HISTORY, times, strict=True)):
        state, _ = record_at(state, tracked(body, at, str(n)), T0, None)
    return state


HISTORY = (BODY, BODY + "\n\nOne.", BODY + "\n\nTwo.")
SEEN = [datetime(2017, 12, 22, h, m, tzinfo=UTC) for h, m in ((9, 31), (11, 40), (14, 5))]


def test_a_second_tracker_listing_the_same_versions_adds_nothing() -> None:
    state = imported_history(SEEN)
    for n, (body, at) in enumerate(zip(HISTORY, SEEN, strict=True)):
        item = identify(tracked(body, at, str(61201 + n)))
        assert decide(state, item, source_id="src-nd", observed_at=T0) is None, n


def test_the_same_tracker_time_is_to_within_a_minute() -> None:
    """One tracker shows 09:31, another 09:31:42 (seconds, or a clock a little off)."""
    state = imported_history(SEEN)
    for offset in (42, -42, 59):
        at = SEEN[0] + timedelta(seconds=offset)
        item = identify(tracked(BODY, at, "61201"))
        assert decide(state, item, source_id="src-nd", observed_at=T0) is None, offset
    for offset in (60, -60, 3600):
        at = SEEN[0] + timedelta(seconds=offset)
        event = decide(state, identify(tracked(BODY, at, "x")), source_id="nd", observed_at=T0)
        assert isinstance(event, ArticleRevised), offset
        assert (event.kind, event.reverts_to_version) == ("revert", 1)


def test_a_second_tracker_rendering_the_same_version_differently_adds_nothing() -> None:
    """Same fingerprint at the same time: the trackers' extraction, not an edit."""
    state = imported_history(SEEN)
    curly = BODY.replace('"talks"', "\u201ctalks\u201d").replace("\n\n", "\n\n  ")
    assert decide(state, identify(tracked(curly, SEEN[0], "61201")), source_id="nd",
                  observed_at=T0) is None  # fmt: skip
    edited = BODY.replace("talks", "negotiations")
    event = decide(state, identify(tracked(edited, SEEN[0], "61201")), source_id="nd",
                   observed_at=T0)  # fmt: skip
    assert isinstance(event, ArticleRevised) and event.kind == "substantive"


def test_a_text_back_at_a_later_tracker_time_is_still_a_revert() -> None:
    state = imported_history(SEEN)
    later = SEEN[2] + timedelta(hours=2)
    state, event = record_at(state, tracked(BODY, later, "3"), T0, None)
    assert event is not None and (event.kind, event.reverts_to_version) == ("revert", 1)
    # the second tracker lists all four: nothing more
    for n, (body, at) in enumerate(zip((*HISTORY, BODY), (*SEEN, later), strict=True)):
        item = identify(tracked(body, at, str(61201 + n)))
        assert decide(state, item, source_id="src-nd", observed_at=T0) is None, n


def test_storylines_own_checks_are_not_matched_by_time() -> None:
    """Only trackers' versions have a tracker time: a file or page back to an earlier
    text is a revert whenever it is seen."""
    state, _ = feed(start(), obs(), 0)
    state, _ = feed(state, obs(BODY + "\n\nAdded."), 0)
    _, event = feed(state, obs(), 0)
    assert isinstance(event, ArticleRevised) and event.kind == "revert"


def test_idempotency_key_depends_on_text_and_predecessor() -> None:
    item = identify(obs())
    assert idempotency_key("inbox", item, 0) == idempotency_key("inbox", item, 0)
    assert idempotency_key("inbox", item, 0) != idempotency_key("inbox", item, 1)
    other = identify(obs(BODY + "!"))
    assert idempotency_key("inbox", item, 0) != idempotency_key("inbox", other, 0)


def test_diff_stats_count_changed_words() -> None:
    assert diff_stats("a b c", "a x c") == (1, 1)
    assert diff_stats("", "new words") == (8, 0)
